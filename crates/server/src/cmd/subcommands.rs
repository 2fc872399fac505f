//! The subcommand table of the container commands (ACL, CONFIG, CLUSTER, COMMAND, CLIENT, OBJECT, XGROUP,
//! XINFO, FUNCTION, SCRIPT, PUBSUB...), which
//! COMMAND INFO/DOCS/LIST report, CLIENT LIST names, and [`subcommand`] checks arity against.

use bytes::Bytes;
use forkless_protocol::Out;

use super::meta::{Flags, KeySpec, flags};
use super::{
    Ctx, acl, eq_ignore_case, introspection, latency, memory, server, slowlog, unknown_subcommand,
};

/// One subcommand of a container command (`config|get`), with what COMMAND INFO and COMMAND
/// DOCS report for it. Subcommands share their container's doc group.
#[derive(Debug)]
pub(crate) struct Subcommand {
    /// Full lower-case name, `container|sub`.
    pub(crate) name: &'static str,
    /// Redis arity, counting the container and the subcommand name.
    pub(crate) arity: i32,
    pub(crate) flags: Flags,
    /// Key positions in the full command line: first key, last key, step.
    pub(crate) keys: KeySpec,
    /// ACL categories without the `@`.
    pub(crate) categories: &'static [&'static str],
    pub(crate) summary: &'static str,
    pub(crate) since: &'static str,
    /// What runs the subcommand, given the arguments after its name; None for the
    /// subcommands of CLIENT, OBJECT, XGROUP, XINFO, SCRIPT and FUNCTION, whose container
    /// handlers parse their own.
    pub(crate) run: Option<SubcommandHandler>,
}

/// Runs one subcommand: gets the arguments after the subcommand's name, writes one reply.
pub(crate) type SubcommandHandler = fn(&mut Ctx<'_>, &[Bytes]);

impl Subcommand {
    /// The container's name (`config` for `config|get`).
    pub(crate) fn container(&self) -> &'static str {
        self.name
            .split_once('|')
            .map_or(self.name, |(container, _)| container)
    }
}

const NO_KEYS: KeySpec = KeySpec::NONE;
const OBJECT_KEY: KeySpec = KeySpec::new(2, 2, 1);
const OBJECT_FLAGS: Flags = flags!(READONLY);
const OBJECT_CATEGORIES: &[&str] = &["keyspace", "read", "slow"];
const ADMIN: Flags = flags!(ADMIN, NOSCRIPT, LOADING, STALE);
const ADMIN_CATEGORIES: &[&str] = &["admin", "slow", "dangerous"];
const ADMIN_STALE: Flags = flags!(ADMIN, LOADING, STALE);
const CLIENT_FLAGS: Flags = flags!(NOSCRIPT, LOADING, STALE);
const CLIENT_ADMIN_CATEGORIES: &[&str] = &["admin", "slow", "dangerous", "connection"];
const STALE: Flags = flags!(LOADING, STALE);
const SLOW_CONNECTION: &[&str] = &["slow", "connection"];
const STREAM_KEY: KeySpec = KeySpec::new(2, 2, 1);
const STREAM_WRITE: &[&str] = &["write", "stream", "slow"];
const STREAM_READ: &[&str] = &["read", "stream", "slow"];
const SCRIPTING: &[&str] = &["slow", "scripting"];
const SCRIPTING_WRITE: &[&str] = &["write", "slow", "scripting"];
const ACL_ADMIN: Flags = flags!(ADMIN, NOSCRIPT, LOADING, STALE, SENTINEL);
const ACL_PLAIN: Flags = flags!(NOSCRIPT, LOADING, STALE, SENTINEL);
/// MODULE LOAD, LOADEX and UNLOAD: dispatch refuses them under `enable-module-command`.
const MODULE_LOAD: Flags = flags!(NO_ASYNC_LOADING, ADMIN, NOSCRIPT, PROTECTED);
const HELP_SUMMARY: &str = "Show helpful text about the different subcommands";

/// The subcommands forkless implements, grouped by container, with Redis 7.0's metadata.
#[rustfmt::skip] // One row per subcommand reads as a table.
pub(crate) const SUBCOMMANDS: &[Subcommand] = &[
    Subcommand { name: "function|delete", arity: 3, flags: flags!(NOSCRIPT, WRITE), keys: NO_KEYS, categories: &["write", "slow", "scripting"], summary: "Delete a function by name", since: "7.0.0", run: None },
    Subcommand { name: "function|dump", arity: 2, flags: flags!(NOSCRIPT), keys: NO_KEYS, categories: &["slow", "scripting"], summary: "Dump all functions into a serialized binary payload", since: "7.0.0", run: None },
    Subcommand { name: "function|flush", arity: -2, flags: flags!(NOSCRIPT, WRITE), keys: NO_KEYS, categories: &["write", "slow", "scripting"], summary: "Deleting all functions", since: "7.0.0", run: None },
    Subcommand { name: "function|help", arity: 2, flags: flags!(LOADING, STALE), keys: NO_KEYS, categories: &["slow", "scripting"], summary: "Show helpful text about the different subcommands", since: "7.0.0", run: None },
    Subcommand { name: "function|kill", arity: 2, flags: flags!(NOSCRIPT, ALLOW_BUSY), keys: NO_KEYS, categories: &["slow", "scripting"], summary: "Kill the function currently in execution.", since: "7.0.0", run: None },
    Subcommand { name: "function|list", arity: -2, flags: flags!(NOSCRIPT), keys: NO_KEYS, categories: &["slow", "scripting"], summary: "List information about all the functions", since: "7.0.0", run: None },
    Subcommand { name: "function|load", arity: -3, flags: flags!(NOSCRIPT, WRITE, DENYOOM), keys: NO_KEYS, categories: &["write", "slow", "scripting"], summary: "Create a function with the given arguments (name, code, description)", since: "7.0.0", run: None },
    Subcommand { name: "function|restore", arity: -3, flags: flags!(NOSCRIPT, WRITE, DENYOOM), keys: NO_KEYS, categories: &["write", "slow", "scripting"], summary: "Restore all the functions on the given payload", since: "7.0.0", run: None },
    Subcommand { name: "function|stats", arity: 2, flags: flags!(NOSCRIPT, ALLOW_BUSY), keys: NO_KEYS, categories: &["slow", "scripting"], summary: "Return information about the function currently running (name, description, duration)", since: "7.0.0", run: None },
    Subcommand { name: "module|help", arity: 2, flags: flags!(LOADING, STALE), keys: NO_KEYS, categories: &["slow"], summary: HELP_SUMMARY, since: "5.0.0", run: None },
    Subcommand { name: "module|list", arity: 2, flags: flags!(ADMIN, NOSCRIPT), keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "List all modules loaded by the server", since: "4.0.0", run: None },
    Subcommand { name: "module|load", arity: -3, flags: MODULE_LOAD, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Load a module", since: "4.0.0", run: None },
    Subcommand { name: "module|loadex", arity: -3, flags: MODULE_LOAD, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Load a module with extended parameters", since: "7.0.0", run: None },
    Subcommand { name: "module|unload", arity: 3, flags: MODULE_LOAD, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Unload a module", since: "4.0.0", run: None },
    Subcommand { name: "pubsub|channels", arity: -2, flags: flags!(PUBSUB, LOADING, STALE), keys: NO_KEYS, categories: &["pubsub", "slow"], summary: "List active channels", since: "2.8.0", run: None },
    Subcommand { name: "pubsub|help", arity: 2, flags: flags!(LOADING, STALE), keys: NO_KEYS, categories: &["slow"], summary: "Show helpful text about the different subcommands", since: "6.2.0", run: None },
    Subcommand { name: "pubsub|numpat", arity: 2, flags: flags!(PUBSUB, LOADING, STALE), keys: NO_KEYS, categories: &["pubsub", "slow"], summary: "Get the count of unique patterns pattern subscriptions", since: "2.8.0", run: None },
    Subcommand { name: "pubsub|numsub", arity: -2, flags: flags!(PUBSUB, LOADING, STALE), keys: NO_KEYS, categories: &["pubsub", "slow"], summary: "Get the count of subscribers for channels", since: "2.8.0", run: None },
    Subcommand { name: "pubsub|shardchannels", arity: -2, flags: flags!(PUBSUB, LOADING, STALE), keys: NO_KEYS, categories: &["pubsub", "slow"], summary: "List active shard channels", since: "7.0.0", run: None },
    Subcommand { name: "pubsub|shardnumsub", arity: -2, flags: flags!(PUBSUB, LOADING, STALE), keys: NO_KEYS, categories: &["pubsub", "slow"], summary: "Get the count of subscribers for shard channels", since: "7.0.0", run: None },
    Subcommand { name: "script|debug", arity: 3, flags: flags!(NOSCRIPT), keys: NO_KEYS, categories: &["slow", "scripting"], summary: "Set the debug mode for executed scripts.", since: "3.2.0", run: None },
    Subcommand { name: "script|exists", arity: -3, flags: flags!(NOSCRIPT), keys: NO_KEYS, categories: &["slow", "scripting"], summary: "Check existence of scripts in the script cache.", since: "2.6.0", run: None },
    Subcommand { name: "script|flush", arity: -2, flags: flags!(NOSCRIPT), keys: NO_KEYS, categories: &["slow", "scripting"], summary: "Remove all the scripts from the script cache.", since: "2.6.0", run: None },
    Subcommand { name: "script|help", arity: 2, flags: flags!(LOADING, STALE), keys: NO_KEYS, categories: &["slow", "scripting"], summary: "Show helpful text about the different subcommands", since: "5.0.0", run: None },
    Subcommand { name: "script|kill", arity: 2, flags: flags!(NOSCRIPT, ALLOW_BUSY), keys: NO_KEYS, categories: &["slow", "scripting"], summary: "Kill the script currently in execution.", since: "2.6.0", run: None },
    Subcommand { name: "script|load", arity: 3, flags: flags!(NOSCRIPT, STALE), keys: NO_KEYS, categories: &["slow", "scripting"], summary: "Load the specified Lua script into the script cache.", since: "2.6.0", run: None },
    Subcommand { name: "acl|cat", arity: -2, flags: ACL_PLAIN, keys: NO_KEYS, categories: &["slow"], summary: "List the ACL categories or the commands inside a category", since: "6.0.0", run: Some(acl::cat) },
    Subcommand { name: "acl|deluser", arity: -3, flags: ACL_ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Remove the specified ACL users and the associated rules", since: "6.0.0", run: Some(acl::deluser) },
    Subcommand { name: "acl|dryrun", arity: -4, flags: ACL_ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Returns whether the user can execute the given command without executing the command.", since: "7.0.0", run: Some(acl::dryrun) },
    Subcommand { name: "acl|genpass", arity: -2, flags: ACL_PLAIN, keys: NO_KEYS, categories: &["slow"], summary: "Generate a pseudorandom secure password to use for ACL users", since: "6.0.0", run: Some(acl::genpass) },
    Subcommand { name: "acl|getuser", arity: 3, flags: ACL_ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Get the rules for a specific ACL user", since: "6.0.0", run: Some(acl::getuser) },
    Subcommand { name: "acl|help", arity: 2, flags: flags!(LOADING, STALE, SENTINEL), keys: NO_KEYS, categories: &["slow"], summary: HELP_SUMMARY, since: "6.0.0", run: Some(acl::help) },
    Subcommand { name: "acl|list", arity: 2, flags: ACL_ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "List the current ACL rules in ACL config file format", since: "6.0.0", run: Some(acl::list) },
    Subcommand { name: "acl|load", arity: 2, flags: ACL_ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Reload the ACLs from the configured ACL file", since: "6.0.0", run: Some(acl::load) },
    Subcommand { name: "acl|log", arity: -2, flags: ACL_ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "List latest events denied because of ACLs in place", since: "6.0.0", run: Some(acl::log) },
    Subcommand { name: "acl|save", arity: 2, flags: ACL_ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Save the current ACL rules in the configured ACL file", since: "6.0.0", run: Some(acl::save) },
    Subcommand { name: "acl|setuser", arity: -3, flags: ACL_ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Modify or create the rules for a specific ACL user", since: "6.0.0", run: Some(acl::setuser) },
    Subcommand { name: "acl|users", arity: 2, flags: ACL_ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "List the username of all the configured ACL rules", since: "6.0.0", run: Some(acl::users) },
    Subcommand { name: "acl|whoami", arity: 2, flags: ACL_PLAIN, keys: NO_KEYS, categories: &["slow"], summary: "Return the name of the user associated to the current connection", since: "6.0.0", run: Some(acl::whoami) },
    Subcommand { name: "config|get", arity: -3, flags: ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Get the values of configuration parameters", since: "2.0.0" , run: Some(server::config_get) },
    Subcommand { name: "config|set", arity: -4, flags: ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Set configuration parameters to the given values", since: "2.0.0" , run: Some(server::config_set) },
    Subcommand { name: "config|resetstat", arity: 2, flags: ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Reset the stats returned by INFO", since: "2.0.0" , run: Some(server::config_resetstat) },
    Subcommand { name: "config|rewrite", arity: 2, flags: ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Rewrite the configuration file with the in memory configuration", since: "2.8.0" , run: Some(server::config_rewrite) },
    Subcommand { name: "config|help", arity: 2, flags: STALE, keys: NO_KEYS, categories: &["slow"], summary: HELP_SUMMARY, since: "5.0.0" , run: Some(server::config_help) },
    Subcommand { name: "cluster|addslots", arity: -3, flags: flags!(NO_ASYNC_LOADING, ADMIN, STALE), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "Assign new hash slots to receiving node", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|addslotsrange", arity: -4, flags: flags!(NO_ASYNC_LOADING, ADMIN, STALE), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "Assign new hash slots to receiving node", since: "7.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|bumpepoch", arity: 2, flags: flags!(NO_ASYNC_LOADING, ADMIN, STALE), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "Advance the cluster config epoch", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|count-failure-reports", arity: 3, flags: flags!(ADMIN, STALE), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "Return the number of failure reports active for a given node", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|countkeysinslot", arity: 3, flags: flags!(STALE), keys: NO_KEYS, categories: &["slow"], summary: "Return the number of local keys in the specified hash slot", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|delslots", arity: -3, flags: flags!(NO_ASYNC_LOADING, ADMIN, STALE), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "Set hash slots as unbound in receiving node", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|delslotsrange", arity: -4, flags: flags!(NO_ASYNC_LOADING, ADMIN, STALE), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "Set hash slots as unbound in receiving node", since: "7.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|failover", arity: -2, flags: flags!(NO_ASYNC_LOADING, ADMIN, STALE), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "Forces a replica to perform a manual failover of its master.", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|flushslots", arity: 2, flags: flags!(NO_ASYNC_LOADING, ADMIN, STALE), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "Delete a node's own slots information", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|forget", arity: 3, flags: flags!(NO_ASYNC_LOADING, ADMIN, STALE), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "Remove a node from the nodes table", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|getkeysinslot", arity: 4, flags: flags!(STALE), keys: NO_KEYS, categories: &["slow"], summary: "Return local key names in the specified hash slot", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|help", arity: 2, flags: flags!(LOADING, STALE), keys: NO_KEYS, categories: &["slow"], summary: "Show helpful text about the different subcommands", since: "5.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|info", arity: 2, flags: flags!(STALE), keys: NO_KEYS, categories: &["slow"], summary: "Provides info about Redis Cluster node state", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|keyslot", arity: 3, flags: flags!(STALE), keys: NO_KEYS, categories: &["slow"], summary: "Returns the hash slot of the specified key", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|links", arity: 2, flags: flags!(STALE), keys: NO_KEYS, categories: &["slow"], summary: "Returns a list of all TCP links to and from peer nodes in cluster", since: "7.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|meet", arity: -4, flags: flags!(NO_ASYNC_LOADING, ADMIN, STALE), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "Force a node cluster to handshake with another node", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|myid", arity: 2, flags: flags!(STALE), keys: NO_KEYS, categories: &["slow"], summary: "Return the node id", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|nodes", arity: 2, flags: flags!(STALE), keys: NO_KEYS, categories: &["slow"], summary: "Get Cluster config for the node", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|replicas", arity: 3, flags: flags!(ADMIN, STALE), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "List replica nodes of the specified master node", since: "5.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|replicate", arity: 3, flags: flags!(NO_ASYNC_LOADING, ADMIN, STALE), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "Reconfigure a node as a replica of the specified master node", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|reset", arity: -2, flags: flags!(ADMIN, STALE, NOSCRIPT), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "Reset a Redis Cluster node", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|saveconfig", arity: 2, flags: flags!(NO_ASYNC_LOADING, ADMIN, STALE), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "Forces the node to save cluster state on disk", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|set-config-epoch", arity: 3, flags: flags!(NO_ASYNC_LOADING, ADMIN, STALE), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "Set the configuration epoch in a new node", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|setslot", arity: -4, flags: flags!(NO_ASYNC_LOADING, ADMIN, STALE), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "Bind a hash slot to a specific node", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|shards", arity: 2, flags: flags!(STALE), keys: NO_KEYS, categories: &["slow"], summary: "Get array of cluster slots to node mappings", since: "7.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|slaves", arity: 3, flags: flags!(ADMIN, STALE), keys: NO_KEYS, categories: &["admin", "slow", "dangerous"], summary: "List replica nodes of the specified master node", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "cluster|slots", arity: 2, flags: flags!(STALE), keys: NO_KEYS, categories: &["slow"], summary: "Get array of Cluster slot to node mappings", since: "3.0.0", run: Some(server::cluster_disabled) },
    Subcommand { name: "command|count", arity: 2, flags: STALE, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Get total number of Redis commands", since: "2.8.13" , run: Some(introspection::command_count) },
    Subcommand { name: "command|docs", arity: -2, flags: STALE, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Get array of specific Redis command documentation", since: "7.0.0" , run: Some(introspection::command_docs) },
    Subcommand { name: "command|getkeys", arity: -4, flags: STALE, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Extract keys given a full Redis command", since: "2.8.13" , run: Some(introspection::command_getkeys) },
    Subcommand { name: "command|getkeysandflags", arity: -4, flags: STALE, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Extract keys and access flags given a full Redis command", since: "7.0.0" , run: Some(introspection::command_getkeysandflags) },
    Subcommand { name: "command|info", arity: -2, flags: STALE, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Get array of specific Redis command details, or all when no argument is given.", since: "2.8.13" , run: Some(introspection::command_info) },
    Subcommand { name: "command|list", arity: -2, flags: STALE, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Get an array of Redis command names", since: "7.0.0" , run: Some(introspection::command_list) },
    Subcommand { name: "command|help", arity: 2, flags: STALE, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: HELP_SUMMARY, since: "5.0.0" , run: Some(introspection::command_help) },
    Subcommand { name: "object|encoding", arity: 3, flags: OBJECT_FLAGS, keys: OBJECT_KEY, categories: OBJECT_CATEGORIES, summary: "Inspect the internal encoding of a Redis object", since: "2.2.3" , run: None },
    Subcommand { name: "object|freq", arity: 3, flags: OBJECT_FLAGS, keys: OBJECT_KEY, categories: OBJECT_CATEGORIES, summary: "Get the logarithmic access frequency counter of a Redis object", since: "4.0.0" , run: None },
    Subcommand { name: "object|help", arity: 2, flags: STALE, keys: NO_KEYS, categories: &["keyspace", "slow"], summary: HELP_SUMMARY, since: "6.2.0" , run: None },
    Subcommand { name: "object|idletime", arity: 3, flags: OBJECT_FLAGS, keys: OBJECT_KEY, categories: OBJECT_CATEGORIES, summary: "Get the time since a Redis object was last accessed", since: "2.2.3" , run: None },
    Subcommand { name: "object|refcount", arity: 3, flags: OBJECT_FLAGS, keys: OBJECT_KEY, categories: OBJECT_CATEGORIES, summary: "Get the number of references to the value of the key", since: "2.2.3" , run: None },
    Subcommand { name: "client|getname", arity: 2, flags: CLIENT_FLAGS, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Get the current connection name", since: "2.6.9" , run: None },
    Subcommand { name: "client|help", arity: 2, flags: STALE, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: HELP_SUMMARY, since: "5.0.0" , run: None },
    Subcommand { name: "client|id", arity: 2, flags: CLIENT_FLAGS, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Returns the client ID for the current connection", since: "5.0.0" , run: None },
    Subcommand { name: "client|info", arity: 2, flags: CLIENT_FLAGS, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Returns information about the current client connection.", since: "6.2.0" , run: None },
    Subcommand { name: "client|kill", arity: -3, flags: ADMIN, keys: NO_KEYS, categories: CLIENT_ADMIN_CATEGORIES, summary: "Kill the connection of a client", since: "2.4.0" , run: None },
    Subcommand { name: "client|list", arity: -2, flags: ADMIN, keys: NO_KEYS, categories: CLIENT_ADMIN_CATEGORIES, summary: "Get the list of client connections", since: "2.4.0" , run: None },
    Subcommand { name: "client|no-evict", arity: 3, flags: ADMIN, keys: NO_KEYS, categories: CLIENT_ADMIN_CATEGORIES, summary: "Set client eviction mode for the current connection", since: "7.0.0" , run: None },
    Subcommand { name: "client|setname", arity: 3, flags: CLIENT_FLAGS, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Set the current connection name", since: "2.6.9" , run: None },
    Subcommand { name: "xgroup|create", arity: -5, flags: flags!(WRITE, DENYOOM), keys: STREAM_KEY, categories: STREAM_WRITE, summary: "Create a consumer group.", since: "5.0.0" , run: None },
    Subcommand { name: "xgroup|createconsumer", arity: 5, flags: flags!(WRITE, DENYOOM), keys: STREAM_KEY, categories: STREAM_WRITE, summary: "Create a consumer in a consumer group.", since: "6.2.0" , run: None },
    Subcommand { name: "xgroup|delconsumer", arity: 5, flags: flags!(WRITE), keys: STREAM_KEY, categories: STREAM_WRITE, summary: "Delete a consumer from a consumer group.", since: "5.0.0" , run: None },
    Subcommand { name: "xgroup|destroy", arity: 4, flags: flags!(WRITE), keys: STREAM_KEY, categories: STREAM_WRITE, summary: "Destroy a consumer group.", since: "5.0.0" , run: None },
    Subcommand { name: "xgroup|help", arity: 2, flags: STALE, keys: NO_KEYS, categories: &["stream", "slow"], summary: HELP_SUMMARY, since: "5.0.0" , run: None },
    Subcommand { name: "xgroup|setid", arity: -5, flags: flags!(WRITE), keys: STREAM_KEY, categories: STREAM_WRITE, summary: "Set a consumer group to an arbitrary last delivered ID value.", since: "5.0.0" , run: None },
    Subcommand { name: "xinfo|consumers", arity: 4, flags: flags!(READONLY), keys: STREAM_KEY, categories: STREAM_READ, summary: "List the consumers in a consumer group", since: "5.0.0" , run: None },
    Subcommand { name: "xinfo|groups", arity: 3, flags: flags!(READONLY), keys: STREAM_KEY, categories: STREAM_READ, summary: "List the consumer groups of a stream", since: "5.0.0" , run: None },
    Subcommand { name: "xinfo|help", arity: 2, flags: STALE, keys: NO_KEYS, categories: &["stream", "slow"], summary: HELP_SUMMARY, since: "5.0.0" , run: None },
    Subcommand { name: "xinfo|stream", arity: -3, flags: flags!(READONLY), keys: STREAM_KEY, categories: STREAM_READ, summary: "Get information about a stream", since: "5.0.0" , run: None },
    Subcommand { name: "client|reply", arity: 3, flags: CLIENT_FLAGS, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Instruct the server whether to reply to commands", since: "3.2.0" , run: None },
    Subcommand { name: "client|pause", arity: -3, flags: ADMIN, keys: NO_KEYS, categories: CLIENT_ADMIN_CATEGORIES, summary: "Stop processing commands from clients for some time", since: "2.9.50" , run: None },
    Subcommand { name: "client|unpause", arity: 2, flags: ADMIN, keys: NO_KEYS, categories: CLIENT_ADMIN_CATEGORIES, summary: "Resume processing of clients that were paused", since: "6.2.0" , run: None },
    Subcommand { name: "client|unblock", arity: -3, flags: ADMIN, keys: NO_KEYS, categories: CLIENT_ADMIN_CATEGORIES, summary: "Unblock a client blocked in a blocking command from a different connection", since: "5.0.0" , run: None },
    Subcommand { name: "client|getredir", arity: 2, flags: CLIENT_FLAGS, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Get tracking notifications redirection client ID if any", since: "6.0.0" , run: None },
    Subcommand { name: "client|tracking", arity: -3, flags: CLIENT_FLAGS, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Enable or disable server assisted client side caching support", since: "6.0.0" , run: None },
    Subcommand { name: "client|caching", arity: 3, flags: CLIENT_FLAGS, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Instruct the server about tracking or not keys in the next request", since: "6.0.0" , run: None },
    Subcommand { name: "client|trackinginfo", arity: 2, flags: CLIENT_FLAGS, keys: NO_KEYS, categories: SLOW_CONNECTION, summary: "Return information about server assisted client side caching for the current connection", since: "6.2.0" , run: None },
    Subcommand { name: "slowlog|get", arity: -2, flags: ADMIN_STALE, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Get the slow log's entries", since: "2.2.12" , run: Some(slowlog::slowlog_get) },
    Subcommand { name: "slowlog|len", arity: 2, flags: ADMIN_STALE, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Get the slow log's length", since: "2.2.12" , run: Some(slowlog::slowlog_len) },
    Subcommand { name: "slowlog|reset", arity: 2, flags: ADMIN_STALE, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Clear all entries from the slow log", since: "2.2.12" , run: Some(slowlog::slowlog_reset) },
    Subcommand { name: "slowlog|help", arity: 2, flags: STALE, keys: NO_KEYS, categories: &["slow"], summary: HELP_SUMMARY, since: "6.2.0" , run: Some(slowlog::slowlog_help) },
    Subcommand { name: "latency|doctor", arity: 2, flags: ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Return a human readable latency analysis report.", since: "2.8.13" , run: Some(latency::latency_doctor) },
    Subcommand { name: "latency|graph", arity: 3, flags: ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Return a latency graph for the event.", since: "2.8.13" , run: Some(latency::latency_graph) },
    Subcommand { name: "latency|histogram", arity: -2, flags: ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Return the cumulative distribution of latencies of a subset of commands or all.", since: "7.0.0" , run: Some(latency::latency_histogram) },
    Subcommand { name: "latency|history", arity: 3, flags: ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Return timestamp-latency samples for the event.", since: "2.8.13" , run: Some(latency::latency_history) },
    Subcommand { name: "latency|latest", arity: 2, flags: ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Return the latest latency samples for all events.", since: "2.8.13" , run: Some(latency::latency_latest) },
    Subcommand { name: "latency|reset", arity: -2, flags: ADMIN, keys: NO_KEYS, categories: ADMIN_CATEGORIES, summary: "Reset latency data for one or more events.", since: "2.8.13" , run: Some(latency::latency_reset) },
    Subcommand { name: "latency|help", arity: 2, flags: STALE, keys: NO_KEYS, categories: &["slow"], summary: HELP_SUMMARY, since: "2.8.13" , run: Some(latency::latency_help) },
    Subcommand { name: "memory|doctor", arity: 2, flags: flags!(), keys: NO_KEYS, categories: &["slow"], summary: "Outputs memory problems report", since: "4.0.0" , run: Some(memory::memory_doctor) },
    Subcommand { name: "memory|malloc-stats", arity: 2, flags: flags!(), keys: NO_KEYS, categories: &["slow"], summary: "Show allocator internal stats", since: "4.0.0" , run: Some(memory::memory_malloc_stats) },
    Subcommand { name: "memory|purge", arity: 2, flags: flags!(), keys: NO_KEYS, categories: &["slow"], summary: "Ask the allocator to release memory", since: "4.0.0" , run: Some(memory::memory_purge) },
    Subcommand { name: "memory|stats", arity: 2, flags: flags!(), keys: NO_KEYS, categories: &["slow"], summary: "Show memory usage details", since: "4.0.0" , run: Some(memory::memory_stats) },
    Subcommand { name: "memory|usage", arity: -3, flags: OBJECT_FLAGS, keys: OBJECT_KEY, categories: &["read", "slow"], summary: "Estimate the memory usage of a key", since: "4.0.0" , run: Some(memory::memory_usage) },
    Subcommand { name: "memory|help", arity: 2, flags: STALE, keys: NO_KEYS, categories: &["slow"], summary: HELP_SUMMARY, since: "4.0.0" , run: Some(memory::memory_help) },
    Subcommand { name: "script|debug", arity: 3, flags: flags!(NOSCRIPT), keys: NO_KEYS, categories: SCRIPTING, summary: "Set the debug mode for executed scripts.", since: "3.2.0" , run: None },
    Subcommand { name: "script|exists", arity: -3, flags: flags!(NOSCRIPT), keys: NO_KEYS, categories: SCRIPTING, summary: "Check existence of scripts in the script cache.", since: "2.6.0" , run: None },
    Subcommand { name: "script|flush", arity: -2, flags: flags!(NOSCRIPT), keys: NO_KEYS, categories: SCRIPTING, summary: "Remove all the scripts from the script cache.", since: "2.6.0" , run: None },
    Subcommand { name: "script|help", arity: 2, flags: STALE, keys: NO_KEYS, categories: SCRIPTING, summary: HELP_SUMMARY, since: "5.0.0" , run: None },
    Subcommand { name: "script|kill", arity: 2, flags: flags!(NOSCRIPT, ALLOW_BUSY), keys: NO_KEYS, categories: SCRIPTING, summary: "Kill the script currently in execution.", since: "2.6.0" , run: None },
    Subcommand { name: "script|load", arity: 3, flags: flags!(NOSCRIPT, STALE), keys: NO_KEYS, categories: SCRIPTING, summary: "Load the specified Lua script into the script cache.", since: "2.6.0" , run: None },
    Subcommand { name: "function|delete", arity: 3, flags: flags!(NOSCRIPT, WRITE), keys: NO_KEYS, categories: SCRIPTING_WRITE, summary: "Delete a function by name", since: "7.0.0" , run: None },
    Subcommand { name: "function|dump", arity: 2, flags: flags!(NOSCRIPT), keys: NO_KEYS, categories: SCRIPTING, summary: "Dump all functions into a serialized binary payload", since: "7.0.0" , run: None },
    Subcommand { name: "function|flush", arity: -2, flags: flags!(NOSCRIPT, WRITE), keys: NO_KEYS, categories: SCRIPTING_WRITE, summary: "Deleting all functions", since: "7.0.0" , run: None },
    Subcommand { name: "function|help", arity: 2, flags: STALE, keys: NO_KEYS, categories: SCRIPTING, summary: HELP_SUMMARY, since: "7.0.0" , run: None },
    Subcommand { name: "function|kill", arity: 2, flags: flags!(NOSCRIPT, ALLOW_BUSY), keys: NO_KEYS, categories: SCRIPTING, summary: "Kill the function currently in execution.", since: "7.0.0" , run: None },
    Subcommand { name: "function|list", arity: -2, flags: flags!(NOSCRIPT), keys: NO_KEYS, categories: SCRIPTING, summary: "List information about all the functions", since: "7.0.0" , run: None },
    Subcommand { name: "function|load", arity: -3, flags: flags!(NOSCRIPT, WRITE, DENYOOM), keys: NO_KEYS, categories: SCRIPTING_WRITE, summary: "Create a function with the given arguments (name, code, description)", since: "7.0.0" , run: None },
    Subcommand { name: "function|restore", arity: -3, flags: flags!(NOSCRIPT, WRITE, DENYOOM), keys: NO_KEYS, categories: SCRIPTING_WRITE, summary: "Restore all the functions on the given payload", since: "7.0.0" , run: None },
    Subcommand { name: "function|stats", arity: 2, flags: flags!(NOSCRIPT, ALLOW_BUSY), keys: NO_KEYS, categories: SCRIPTING, summary: "Return information about the function currently running (name, description, duration)", since: "7.0.0" , run: None },
];

/// The subcommands of `container`, in table order.
pub(crate) fn subcommands_of(container: &str) -> impl Iterator<Item = &'static Subcommand> + '_ {
    SUBCOMMANDS
        .iter()
        .filter(move |sub| sub.container() == container)
}

/// The index in [`SUBCOMMANDS`] of `container|sub` (any case).
pub(crate) fn subcommand_index(container: &[u8], sub: &[u8]) -> Option<usize> {
    SUBCOMMANDS.iter().position(|row| {
        row.name.split_once('|').is_some_and(|(parent, name)| {
            eq_ignore_case(container, parent) && eq_ignore_case(sub, name)
        })
    })
}

/// Finds `container|sub` (any case) in the subcommand table.
pub(crate) fn find_subcommand(container: &[u8], sub: &[u8]) -> Option<&'static Subcommand> {
    subcommand_index(container, sub).and_then(|idx| SUBCOMMANDS.get(idx))
}

/// Resolves the subcommand named by `argv[1]` and checks its arity, replying as Redis does when
/// either fails ("unknown subcommand", "wrong number of arguments for 'config|get' command").
/// Returns the table row only when the handler should go on. For container handlers.
pub(crate) fn subcommand(ctx: &mut Ctx<'_>, argv: &[Bytes]) -> Option<&'static Subcommand> {
    let (Some(container), Some(sub)) = (argv.first(), argv.get(1)) else {
        unknown_subcommand(ctx, argv);
        return None;
    };
    let Some(found) = find_subcommand(container, sub) else {
        unknown_subcommand(ctx, argv);
        return None;
    };
    if !arity_ok(found.arity, argv.len()) {
        ctx.out.error(&format!(
            "ERR wrong number of arguments for '{}' command",
            found.name
        ));
        return None;
    }
    Some(found)
}

/// A container handler that is nothing but its subcommands (CONFIG, COMMAND with arguments):
/// resolves `argv[1]`, checks its arity and runs its row's handler.
pub(crate) fn run_subcommand(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(sub) = subcommand(ctx, argv) else {
        return;
    };
    match sub.run {
        Some(run) => run(ctx, argv.get(2..).unwrap_or_default()),
        None => unknown_subcommand(ctx, argv),
    }
}

/// Returns true if and only if `argc` arguments satisfy Redis arity `arity`.
pub(crate) fn arity_ok(arity: i32, argc: usize) -> bool {
    let argc = i64::try_from(argc).unwrap_or(i64::MAX);
    let arity = i64::from(arity);
    if arity >= 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

/// Writes a HELP reply: one status line per entry, under Redis's header line.
pub(crate) fn help_reply(out: &mut Out, container: &str, lines: &[&str]) {
    out.array_len(lines.len() + 1);
    out.simple(
        format!("{container} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:").as_bytes(),
    );
    for line in lines {
        out.simple(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::lookup;

    #[test]
    fn every_subcommand_belongs_to_a_known_container() {
        for sub in SUBCOMMANDS {
            let (container, name) = sub.name.split_once('|').expect("container|sub");
            assert!(lookup(container.as_bytes()).is_some(), "{}", sub.name);
            assert!(
                !name.is_empty() && name == name.to_ascii_lowercase(),
                "{}",
                sub.name
            );
            assert!(sub.arity >= 2 || sub.arity <= -2, "{}", sub.name);
        }
    }

    #[test]
    fn arity_follows_redis_rules() {
        assert!(arity_ok(2, 2));
        assert!(!arity_ok(2, 3));
        assert!(arity_ok(-3, 3));
        assert!(arity_ok(-3, 9));
        assert!(!arity_ok(-3, 2));
    }
}
