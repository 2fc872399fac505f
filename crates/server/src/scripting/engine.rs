//! The Lua interpreter: its sandbox, the script cache, and running one script.
//!
//! One `Engine` runs EVAL scripts and another runs FUNCTION libraries, as Redis keeps two Lua
//! states (SCRIPT FLUSH drops the first and leaves the functions alone). Both are built the same
//! way: Lua 5.1's base, table, string and math libraries, Redis's bundled libraries
//! (`libs.rs`), then `sandbox.lua`, which makes the `redis` table and the protected globals.
//!
//! The Rust half of `redis.call` and `redis.setresp` is made once, with the interpreter; a run
//! fills in what they work with (`CallState`: the script's client, its reply buffer, its
//! limits). An EVAL script is started through Lua's C API (`Engine::run_eval`), FCALL through
//! the sandbox's Lua runner.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::c_int;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use forkless_protocol::{Frame, Limits, Out, RespVersion, decode_frame, format_double};
use mlua::{
    Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, Variadic, ffi,
};
use sha1::{Digest, Sha1};

use super::convert::{ReplyTarget, frame_to_lua, frame_to_lua_resp3, lua_to_reply};
use super::{HOOK_INSTRUCTIONS, RunState};
use crate::cmd::meta::Flags;
use crate::cmd::{Client, dispatch, lookup};
use crate::server::{Server, lock};

/// `SCRIPT_FLAG_*`: what a shebang line or `register_function` declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScriptFlags {
    /// No shebang: Redis's compatibility mode, which ignores the other flags.
    pub(crate) compat: bool,
    pub(crate) no_writes: bool,
    pub(crate) allow_oom: bool,
    pub(crate) allow_stale: bool,
    pub(crate) no_cluster: bool,
    pub(crate) allow_cross_slot: bool,
}

impl ScriptFlags {
    /// Sets the flag named `name` (Redis's spelling). Returns false for an unknown name.
    pub(crate) fn set(&mut self, name: &str) -> bool {
        match name {
            "no-writes" => self.no_writes = true,
            "allow-oom" => self.allow_oom = true,
            "allow-stale" => self.allow_stale = true,
            "no-cluster" => self.no_cluster = true,
            "allow-cross-slot-keys" => self.allow_cross_slot = true,
            _ => return false,
        }
        true
    }

    /// The names FUNCTION LIST reports, in Redis's order.
    pub(crate) fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.no_writes {
            names.push("no-writes");
        }
        if self.allow_oom {
            names.push("allow-oom");
        }
        if self.allow_stale {
            names.push("allow-stale");
        }
        if self.no_cluster {
            names.push("no-cluster");
        }
        if self.allow_cross_slot {
            names.push("allow-cross-slot-keys");
        }
        names
    }
}

/// A script in the EVAL cache.
struct CachedScript {
    body: Bytes,
    flags: ScriptFlags,
    function: Function,
}

/// How a script is being run.
pub(crate) struct RunSpec<'a> {
    /// The name errors and FUNCTION STATS show: the SHA-1 for EVAL, the function's name.
    pub(crate) name: &'a str,
    pub(crate) flags: ScriptFlags,
    /// EVAL_RO, EVALSHA_RO, FCALL_RO.
    pub(crate) read_only_command: bool,
    /// EVAL (keys and arguments as globals) rather than FCALL (as the function's arguments).
    pub(crate) eval: bool,
    pub(crate) keys: &'a [Bytes],
    pub(crate) args: &'a [Bytes],
}

/// The parts of the sandbox the engine calls.
struct Sandbox {
    env: Table,
    raw: Table,
    /// What [`Engine::run_eval`] reads from the registry (by index, which costs less than
    /// pushing mlua handles): the error handler an EVAL script runs with (`sandbox.lua`'s
    /// `handler`), the names "KEYS" and "ARGV", and the table of the arrays the last run had
    /// as KEYS (`[1]`) and ARGV (`[2]`), which the next run refills when the script left them
    /// plain arrays (see [`set_array_global`]).
    eval_registry: [mlua::RegistryKey; 4],
    run_function: Function,
    run_function_strings: Function,
    /// Returned by `sandbox.lua`: what `functions.rs` builds the load environment from.
    module: Table,
}

pub(crate) struct Engine {
    /// The interpreter's memory after the last collection step (see [`GC_GROWTH`]).
    collected_at: Cell<usize>,
    lua: Lua,
    sandbox: Sandbox,
    /// Looked up by SHA-1 for every EVALSHA: foldhash, seeded per interpreter (as the
    /// keyspace's tables), rather than SipHash.
    scripts: HashMap<String, CachedScript, foldhash::fast::RandomState>,
    /// What `redis.call` works with: the script's own client and reply buffer. The callbacks
    /// are made once, with the interpreter; a run fills this in.
    calls: Arc<Mutex<CallState>>,
    run_state: Arc<RunState>,
    /// Where `redis.call` puts a reply mlua built (a string, a table) to fetch it onto its own
    /// stack: slot 1 of this table, also held in the registry under `scratch_key`.
    scratch: Table,
    scratch_key: mlua::RegistryKey,
}

/// Redis's `redisLrand48`: the 48-bit linear congruential generator of `lrand48`, with Redis's
/// own state so every platform gives scripts the same sequence.
#[derive(Debug)]
pub(crate) struct Lrand48 {
    state: u64,
}

impl Default for Lrand48 {
    fn default() -> Self {
        Lrand48 {
            state: 0x1234_ABCD_330E,
        }
    }
}

impl Lrand48 {
    const MULTIPLIER: u64 = 0x5_DEEC_E66D;
    const MASK: u64 = (1 << 48) - 1;

    pub(crate) fn next(&mut self) -> i32 {
        self.state = (self.state.wrapping_mul(Self::MULTIPLIER).wrapping_add(0xB)) & Self::MASK;
        i32::try_from(self.state >> 17).unwrap_or(i32::MAX)
    }

    pub(crate) fn seed(&mut self, seed: i32) {
        let seed = u64::from(seed as u32);
        self.state = (seed << 16) | 0x330E;
    }
}

/// The SHA-1 of `body` in lower-case hex, as Redis names scripts.
pub(crate) fn sha1_hex(body: &[u8]) -> String {
    let digest = Sha1::digest(body);
    let mut hex = String::with_capacity(40);
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    hex
}

/// Parses an EVAL script's shebang line (`#!lua flags=no-writes,allow-oom`). Returns the flags
/// and the length of the line (without its line feed, which stays so line numbers hold).
pub(crate) fn parse_shebang(body: &[u8]) -> Result<(ScriptFlags, usize), String> {
    if !body.starts_with(b"#!") {
        return Ok((
            ScriptFlags {
                compat: true,
                ..ScriptFlags::default()
            },
            0,
        ));
    }
    let Some(end) = body.iter().position(|&b| b == b'\n') else {
        return Err("ERR Invalid script shebang".into());
    };
    let line = String::from_utf8_lossy(body.get(..end).unwrap_or_default()).into_owned();
    let mut parts = line.split_whitespace();
    let Some(engine) = parts.next() else {
        return Err("ERR Invalid engine in script shebang".into());
    };
    if engine != "#!lua" {
        return Err(format!("ERR Unexpected engine in script shebang: {engine}"));
    }
    let mut flags = ScriptFlags::default();
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {part}"));
        };
        for flag in list.split(',') {
            if flag.is_empty() {
                continue;
            }
            if !flags.set(flag) {
                return Err(format!("ERR Unexpected flag in script shebang: {flag}"));
            }
        }
    }
    Ok((flags, end))
}

/// What the caller of [`Engine::run`] needs to know of the run besides its reply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunOutcome {
    /// True if and only if the reply is an error INFO has counted already: one a command the
    /// script ran replied (or a refusal of it), which the script raised or returned. Redis
    /// counts such an error once, when the command replies it.
    pub(crate) error_counted: bool,
    /// True if and only if the script called a read-only command: a tracking caller then
    /// tracks the keys the script declared.
    pub(crate) read: bool,
}

/// The text of a Lua error value, for the error handler (`raw.errstr`).
fn error_text(value: &Value) -> String {
    match value {
        Value::String(s) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
        Value::Error(err) => mlua_error_text(err),
        Value::Integer(n) => n.to_string(),
        Value::Number(n) => format_double(*n),
        Value::Nil => "nil".into(),
        Value::Boolean(b) => b.to_string(),
        other => format!("{}: {:p}", other.type_name(), other.to_pointer()),
    }
}

/// An error reply of a command a script ran with `redis.call`, raised into the script. Its
/// text carries its code (`ERR ...`, `WRONGTYPE ...`); the flag is true if and only if INFO
/// has counted the error already (the command replied it, or the script's call was refused).
#[derive(Debug)]
pub(crate) struct CallError(pub(crate) String, pub(crate) bool);

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CallError {}

/// The text of a [`CallError`] inside `err`, and whether it was counted, if it is one.
fn call_error(err: &mlua::Error) -> Option<(String, bool)> {
    match err {
        mlua::Error::ExternalError(inner) => inner
            .downcast_ref::<CallError>()
            .map(|e| (e.0.clone(), e.1)),
        mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
            call_error(cause)
        }
        _ => None,
    }
}

/// The message of an error raised by a Rust callback or the hook, without mlua's decoration.
pub(crate) fn mlua_error_text(err: &mlua::Error) -> String {
    match err {
        mlua::Error::RuntimeError(msg) | mlua::Error::SyntaxError { message: msg, .. } => {
            msg.clone()
        }
        mlua::Error::MemoryError(_) => "not enough memory".into(),
        mlua::Error::CallbackError { cause, .. } => mlua_error_text(cause),
        mlua::Error::WithContext { cause, .. } => mlua_error_text(cause),
        mlua::Error::ExternalError(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

impl Engine {
    /// Starts an interpreter with Redis's libraries and sandbox.
    pub(crate) fn new(run_state: Arc<RunState>, server: Weak<Server>) -> mlua::Result<Engine> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            LuaOptions::default(),
        )?;
        super::libs::register(&lua)?;
        let raw = lua.create_table()?;
        raw.raw_set(
            "sha1hex",
            lua.create_function(|_, value: Value| {
                let bytes = match &value {
                    Value::String(s) => s.as_bytes().to_vec(),
                    Value::Integer(n) => n.to_string().into_bytes(),
                    Value::Number(n) => format_double(*n).into_bytes(),
                    _ => Vec::new(),
                };
                Ok(sha1_hex(&bytes))
            })?,
        )?;
        let rand = Arc::new(std::sync::Mutex::new(Lrand48::default()));
        let rand_next = Arc::clone(&rand);
        raw.raw_set(
            "random",
            lua.create_function(move |_, ()| {
                let r = crate::server::lock(&rand_next).next() % i32::MAX;
                Ok(f64::from(r) / f64::from(i32::MAX))
            })?,
        )?;
        raw.raw_set(
            "randomseed",
            lua.create_function(move |_, seed: f64| {
                crate::server::lock(&rand).seed(super::convert::truncate(seed) as i32);
                Ok(())
            })?,
        )?;
        raw.raw_set(
            "errinfo",
            lua.create_function(|_, value: Value| {
                Ok(match &value {
                    Value::Error(err) => match call_error(err) {
                        Some((text, counted)) => (text, true, counted),
                        None => (mlua_error_text(err), false, false),
                    },
                    other => (error_text(other), false, false),
                })
            })?,
        )?;
        raw.raw_set(
            "where",
            lua.create_function(|lua, ()| {
                // The first Lua frame outside the sandbox: the user's code that failed.
                for level in 1..64 {
                    let found = lua.inspect_stack(level, |debug| {
                        let source = debug.source();
                        let src = source.source.as_deref().unwrap_or("").to_owned();
                        (source.what, src, debug.current_line())
                    });
                    let Some((what, source, line)) = found else {
                        break;
                    };
                    if what == "C" || source == "=sandbox" || source == "=[C]" {
                        continue;
                    }
                    return Ok((Some(source), line.map(|l| l as i64)));
                }
                Ok((None, None))
            })?,
        )?;
        let killed = Arc::clone(&run_state);
        raw.raw_set(
            "killed",
            lua.create_function(move |_, ()| Ok(killed.kill_requested()))?,
        )?;
        raw.raw_set(
            "log",
            lua.create_function(|_, (level, message): (i64, mlua::String)| {
                let message = String::from_utf8_lossy(&message.as_bytes()).into_owned();
                match level {
                    0 | 1 => tracing::debug!("{message}"),
                    2 => tracing::info!("{message}"),
                    _ => tracing::warn!("{message}"),
                }
                Ok(())
            })?,
        )?;
        raw.raw_set(
            "command_exists",
            lua.create_function(|_, name: Value| {
                Ok(match name {
                    Value::String(s) => lookup(&s.as_bytes()).is_some(),
                    _ => false,
                })
            })?,
        )?;
        raw.raw_set("version", crate::info::REDIS_VERSION)?;
        raw.raw_set("version_num", version_num(crate::info::REDIS_VERSION))?;
        let module: Table = lua
            .load(include_str!("sandbox.lua"))
            .set_name("=sandbox")
            .call((lua.globals(), raw.clone()))?;
        let sandbox = Sandbox {
            env: module.raw_get("env")?,
            eval_registry: [
                lua.create_registry_value(module.raw_get::<Function>("handler")?)?,
                lua.create_registry_value(lua.create_string("KEYS")?)?,
                lua.create_registry_value(lua.create_string("ARGV")?)?,
                lua.create_registry_value(lua.create_table()?)?,
            ],
            run_function: module.raw_get("run_function")?,
            run_function_strings: module.raw_get("run_function_strings")?,
            raw,
            module,
        };
        let calls = Arc::new(Mutex::new(CallState {
            server,
            client: script_client(),
            reply: Out::new(RespVersion::Resp2),
            read_only: false,
            allow_oom: false,
            memory_limit: 0,
            run_state: Arc::clone(&run_state),
            argv: Vec::new(),
        }));
        let redis: Table = sandbox.module.raw_get("redis")?;
        // SAFETY: both are `lua_CFunction`s that keep to the Lua C API's rules (see
        // `redis_call_entry`).
        #[allow(unsafe_code)]
        unsafe {
            redis.raw_set("call", lua.create_c_function(redis_call)?)?;
            redis.raw_set("pcall", lua.create_c_function(redis_pcall)?)?;
        }
        let call_state = Arc::clone(&calls);
        sandbox.raw.raw_set(
            "acl_check",
            lua.create_function(move |_, args: MultiValue| {
                let argv: Vec<Bytes> = args
                    .iter()
                    .filter_map(|arg| match arg {
                        Value::String(s) => Some(Bytes::copy_from_slice(&s.as_bytes())),
                        Value::Integer(n) => Some(Bytes::from(n.to_string())),
                        Value::Number(n) => Some(Bytes::from(format_double(*n))),
                        _ => None,
                    })
                    .collect();
                let Some((idx, _)) = argv.first().and_then(|name| lookup(name)) else {
                    return Ok(false);
                };
                Ok(lock(&call_state).client.acl.allows(idx, &argv))
            })?,
        )?;
        let call_state = Arc::clone(&calls);
        sandbox.raw.raw_set(
            "limit",
            lua.create_function(move |lua, ()| {
                let limit = lock(&call_state).memory_limit;
                lua.set_memory_limit(limit)?;
                Ok(())
            })?,
        )?;
        let call_state = Arc::clone(&calls);
        sandbox.raw.raw_set(
            "setresp",
            lua.create_function(move |_, version: i64| {
                lock(&call_state).reply.version = if version == 3 {
                    RespVersion::Resp3
                } else {
                    RespVersion::Resp2
                };
                Ok(())
            })?,
        )?;
        let hook_state = Arc::clone(&run_state);
        let hook_server = lock(&calls).server.clone();
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(HOOK_INSTRUCTIONS),
            move |_, _| {
                // A server asked to stop (SIGTERM, SHUTDOWN) does not wait for a script.
                if hook_server.upgrade().is_some_and(|server| {
                    server
                        .shutting_down
                        .load(std::sync::atomic::Ordering::Acquire)
                }) {
                    return Err(mlua::Error::RuntimeError(
                        "Script aborted: the server is shutting down".into(),
                    ));
                }
                hook_state.on_hook()
            },
        )?;
        lua.gc_collect()?;
        let scratch = lua.create_table()?;
        let scratch_key = lua.create_registry_value(scratch.clone())?;
        Ok(Engine {
            collected_at: Cell::new(lua.used_memory()),
            lua,
            sandbox,
            scripts: HashMap::default(),
            calls,
            run_state,
            scratch,
            scratch_key,
        })
    }

    /// The table of Rust functions the sandbox calls (`raw`).
    pub(crate) fn raw_table(&self) -> mlua::Result<Table> {
        Ok(self.sandbox.raw.clone())
    }

    pub(crate) fn run_state(&self) -> &RunState {
        &self.run_state
    }

    pub(crate) fn lua(&self) -> &Lua {
        &self.lua
    }

    /// The table `sandbox.lua` returned.
    pub(crate) fn sandbox_module(&self) -> &Table {
        &self.sandbox.module
    }

    /// Number of cached EVAL scripts and the bytes of their bodies, for INFO.
    pub(crate) fn cache_stats(&self) -> (usize, usize) {
        (
            self.scripts.len(),
            self.scripts.values().map(|s| s.body.len() + 40).sum(),
        )
    }

    /// Lua's memory in use.
    pub(crate) fn memory(&self) -> usize {
        self.lua.used_memory()
    }

    /// Returns true if and only if the cache holds the script with this SHA-1 (any case).
    pub(crate) fn has_script(&self, sha: &[u8]) -> bool {
        sha.len() == 40
            && self
                .scripts
                .contains_key(&String::from_utf8_lossy(sha).to_ascii_lowercase())
    }

    /// Compiles `body` into the cache (SCRIPT LOAD, EVAL). Returns its SHA-1; Err is the error
    /// reply.
    pub(crate) fn load_script(&mut self, body: &Bytes) -> Result<String, String> {
        let sha = sha1_hex(body);
        if self.scripts.contains_key(&sha) {
            return Ok(sha);
        }
        let (flags, shebang_len) = parse_shebang(body)?;
        let code = body.get(shebang_len..).unwrap_or_default();
        let function = self
            .lua
            .load(code)
            .set_name("@user_script")
            .set_mode(mlua::ChunkMode::Text)
            .set_environment(self.sandbox.env.clone())
            .into_function()
            .map_err(|err| {
                format!(
                    "ERR Error compiling script (new function): {}",
                    mlua_error_text(&err)
                )
            })?;
        self.scripts.insert(
            sha.clone(),
            CachedScript {
                body: body.clone(),
                flags,
                function,
            },
        );
        Ok(sha)
    }

    /// The flags and function of a cached script, borrowed: a clone of a Lua handle costs mlua
    /// a lock and a slot.
    pub(crate) fn cached(&self, sha: &str) -> Option<(ScriptFlags, &Function)> {
        self.scripts
            .get(sha)
            .map(|script| (script.flags, &script.function))
    }

    /// The flags and function of a cached script.
    pub(crate) fn script(&self, sha: &str) -> Option<(ScriptFlags, Function)> {
        self.scripts
            .get(sha)
            .map(|script| (script.flags, script.function.clone()))
    }

    /// Runs `function` for a client: `keys` and `args` as KEYS/ARGV (EVAL) or as the function's
    /// two arguments (FCALL). Writes the reply into `out`. The caller holds the gate exclusively
    /// and has made the checks Redis makes before a run.
    ///
    /// Says whether the reply is an error INFO has counted already and whether the script
    /// read anything (see [`RunOutcome`]).
    pub(crate) fn run(
        &self,
        server: &Server,
        caller: &Client,
        out: &mut Out,
        function: &Function,
        spec: &RunSpec<'_>,
    ) -> RunOutcome {
        let limit = server.tunables.script_memory_limit.load(Ordering::Relaxed);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        {
            let mut calls = lock(&self.calls);
            calls.read_only =
                spec.read_only_command || (!spec.flags.compat && spec.flags.no_writes);
            calls.allow_oom = !spec.flags.compat && spec.flags.allow_oom;
            calls.client.db = caller.db;
            calls.client.conn.tracking.start_script(caller.id);
            // The script's commands run as the caller's user (Redis's `scriptCall`).
            calls.client.acl = caller.acl.clone();
            calls.client.acl_caller = Some(Arc::clone(&caller.handle));
            calls.client.close_after_reply = false;
            calls.client.multi = None;
            calls.reply.version = RespVersion::Resp2;
            calls.reply.buf.clear();
        }
        let running = Running::new(self);
        let result = self.run_inner(function, spec, limit);
        drop(running);
        // The limit is lifted first: converting the result, and a collection, may need memory.
        let _ = self.lua.set_memory_limit(0);
        let (resp3, read) = {
            let calls = lock(&self.calls);
            (
                calls.reply.version == RespVersion::Resp3,
                calls.client.conn.tracking.script_read(),
            )
        };
        let counted = match &result {
            Ok((_, Value::Table(table))) => counted_error(table),
            _ => false,
        };
        match result {
            Ok((true, value)) => {
                let mut target = ReplyTarget {
                    out,
                    script_resp3: resp3,
                };
                lua_to_reply(&mut target, &value, 0);
            }
            Ok((false, Value::Table(err))) => {
                let msg: String = err
                    .raw_get::<Option<mlua::String>>("err")
                    .ok()
                    .flatten()
                    .map(|s| String::from_utf8_lossy(&s.as_bytes()).into_owned())
                    .unwrap_or_default();
                let source: Option<String> = err.raw_get("source").ok().flatten();
                let line: Option<i64> = err.raw_get("line").ok().flatten();
                let msg = msg.strip_prefix('-').unwrap_or(&msg);
                let text = match (source, line) {
                    (Some(source), Some(line)) => {
                        format!("{msg} script: {}, on {source}:{line}.", spec.name)
                    }
                    _ => msg.to_string(),
                };
                out.error(&one_line(&text));
            }
            Ok((false, other)) => {
                let msg: String = error_text(&other).chars().take(100).collect();
                out.error(&one_line(&format!(
                    "ERR Error running script {}, {msg}",
                    spec.name
                )));
            }
            Err(err) => {
                let msg: String = mlua_error_text(&err).chars().take(100).collect();
                out.error(&one_line(&format!(
                    "ERR Error running script {}, {msg}",
                    spec.name
                )));
            }
        }
        // A step of garbage collection (Redis's size: 50 KB) once the runs since the last one
        // have left GC_GROWTH bytes more in the interpreter, rather than every 50 runs as
        // Redis does: each such step runs the collector through most of a cycle, which marks
        // everything the interpreter holds, while short scripts leave little garbage, so a
        // step every 50 runs cost more than the scripts' own Lua (docs/benchmarks.md,
        // "Scripts"). Memory stays within GC_GROWTH of what the last step left; Lua's own
        // incremental steps go on as it allocates. A script that ran out of memory, or left a
        // lot behind, is collected at once.
        let used = self.lua.used_memory();
        if used > (64 << 20) || (limit > 0 && used > limit / 2) {
            let _ = self.lua.gc_collect();
            self.collected_at.set(self.lua.used_memory());
        } else if used > self.collected_at.get().saturating_add(GC_GROWTH) {
            let _ = self.lua.gc_step_kbytes(50);
            self.collected_at.set(self.lua.used_memory());
        } else if used < self.collected_at.get() {
            // Lua's own steps collected meanwhile.
            self.collected_at.set(used);
        }
        RunOutcome {
            error_counted: counted,
            read,
        }
    }

    fn run_inner(
        &self,
        function: &Function,
        spec: &RunSpec<'_>,
        limit: usize,
    ) -> mlua::Result<(bool, Value)> {
        let lua = &self.lua;
        if spec.eval {
            return self.run_eval(function, spec, limit);
        }
        {
            let mut calls = lock(&self.calls);
            // Set by the runner in Lua (`raw.limit`), once the engine has pushed what the run
            // needs.
            calls.memory_limit = limit;
        }
        let n_items = spec.keys.len() + spec.args.len();
        if n_items <= MAX_PUSHED_STRINGS {
            // A few strings go on the stack as they are (mlua pushes a `&str` without a
            // handle while no memory limit is set); the runner makes the two tables.
            let mut strings: Variadic<&str> = Variadic::with_capacity(n_items);
            for item in spec.keys.iter().chain(spec.args) {
                match std::str::from_utf8(item) {
                    Ok(text) => strings.push(text),
                    Err(_) => break,
                }
            }
            if strings.len() == n_items {
                let n_keys = i64::try_from(spec.keys.len()).unwrap_or(i64::MAX);
                return self
                    .sandbox
                    .run_function_strings
                    .call((function, n_keys, strings));
            }
        }
        let keys_table = fill(lua, spec.keys)?;
        let args_table = fill(lua, spec.args)?;
        self.sandbox
            .run_function
            .call((function, keys_table, args_table))
    }
}

impl Engine {
    /// Runs an EVAL script: sets KEYS and ARGV (left set after the run, as Redis leaves them),
    /// and calls the script with the sandbox's error handler under the memory limit. Returns
    /// what `xpcall` would: whether the script succeeded, and its result or its error.
    ///
    /// Done with Lua's C API in one protected call (`Lua::exec_raw`) rather than through
    /// mlua's table and string handles, each of which costs a lock and a reference slot, or a
    /// runner written in Lua: either cost more than a short script itself (docs/benchmarks.md,
    /// "Scripts"). The memory limit holds only around the script: what the engine builds here
    /// stays outside it (as do the replies `redis.call` builds, see [`LiftedLimit`]).
    fn run_eval(
        &self,
        function: &Function,
        spec: &RunSpec<'_>,
        limit: usize,
    ) -> mlua::Result<(bool, Value)> {
        let lua = &self.lua;
        let (keys, args) = (spec.keys, spec.args);
        if c_int::try_from(keys.len().max(args.len())).is_err() {
            return Err(mlua::Error::RuntimeError("too many arguments".into()));
        }
        let [handler, keys_name, argv_name, arrays] = self.sandbox.eval_registry.each_ref();
        let registry_ids = [handler.id(), keys_name.id(), argv_name.id(), arrays.id()];
        // SAFETY: `exec_raw` runs the closure inside a protected call whose stack holds exactly
        // its one argument, the script (index 1), and turns what the closure leaves on that
        // stack into the result. The closure first pushes the four registry values (the
        // handler at HANDLER, the names at KEYS_NAME and ARGV_NAME, the table of arrays at
        // ARRAYS: the registry keys live as long as the engine). It checks the stack space it
        // uses (`luaL_checkstack`), passes only valid indices (those five, negative indices of
        // values it pushed, LUA_REGISTRYINDEX, LUA_GLOBALSINDEX), hands the C API pointers into
        // `keys`/`args` that outlive the calls (Lua copies the bytes), and leaves exactly the
        // two results. A Lua error raised by the C API in here (memory, stack) unwinds to that
        // protected call: the closure owns nothing that needs dropping. The script's own
        // errors stop at the inner `lua_pcall`.
        #[allow(unsafe_code)]
        unsafe {
            lua.exec_raw::<(bool, Value)>(function, |state| {
                ffi::luaL_checkstack(state, 10, std::ptr::null());
                for id in registry_ids {
                    ffi::lua_rawgeti_(state, ffi::LUA_REGISTRYINDEX, id);
                }
                set_array_global(state, KEYS_NAME, 1, keys);
                set_array_global(state, ARGV_NAME, 2, args);
                let _ = lua.set_memory_limit(limit);
                ffi::lua_pushvalue(state, 1);
                let status = ffi::lua_pcall(state, 0, 1, HANDLER);
                let _ = lua.set_memory_limit(0);
                // [script, handler, KEYS, ARGV, arrays, result] -> [ok, result]
                ffi::lua_pushboolean(state, c_int::from(status == ffi::LUA_OK));
                ffi::lua_replace(state, 1);
                ffi::lua_replace(state, 2);
                ffi::lua_settop(state, 2);
            })
        }
    }
}

/// Where [`Engine::run_eval`]'s protected call has the error handler, the names "KEYS" and
/// "ARGV", and the table of arrays it reuses.
const HANDLER: c_int = 2;
const KEYS_NAME: c_int = 3;
const ARGV_NAME: c_int = 4;
const ARRAYS: c_int = 5;

/// The longest array a run leaves for the next one to refill: a longer one is left to the
/// collector, so one big EVAL does not keep its arrays' memory.
const REUSED_ARRAY_MAX: i64 = 64;

/// Sets the global named at stack index `name` to an array of `items`, as Redis's
/// `luaCreateArray` makes KEYS and ARGV: the array in slot `slot` of the reused arrays,
/// refilled (the global still names it), or a new one kept there for the next run and set as
/// the global. A new array each run was half the
/// garbage a short script leaves, and so half the collector's work (docs/benchmarks.md,
/// "Scripts"). The last run's array is refilled only when it is still a plain array of at
/// most [`REUSED_ARRAY_MAX`] items (no metatable, no other keys: what the script did to it
/// does not show), and only at the start of the next run, once the last run's reply (which may
/// hold it) has been converted. Nothing else can hold it then: the sandbox gives scripts no
/// place that outlives a run.
///
/// # Safety
/// `state` has 4 free stack slots, `name` is a valid absolute index, [`ARRAYS`] is a table,
/// and the number of items fits a `c_int` (the caller checks); runs inside a protected call
/// (Lua raises on a failed allocation).
#[allow(unsafe_code)]
unsafe fn set_array_global(state: *mut ffi::lua_State, name: c_int, slot: c_int, items: &[Bytes]) {
    // SAFETY: as the function's contract says; every pointer is valid for the call.
    unsafe {
        ffi::lua_rawgeti_(state, ARRAYS, slot);
        let reused = match plain_array_len(state) {
            Some(old_len) => {
                for idx in (i64::try_from(items.len()).unwrap_or(i64::MAX) + 1)..=old_len {
                    ffi::lua_pushnil(state);
                    ffi::lua_rawseti_(state, -2, c_int::try_from(idx).unwrap_or(0));
                }
                true
            }
            None => {
                ffi::lua_settop(state, -2);
                ffi::lua_createtable(state, c_int::try_from(items.len()).unwrap_or(0), 0);
                ffi::lua_pushvalue(state, -1);
                ffi::lua_rawseti_(state, ARRAYS, slot);
                false
            }
        };
        for (idx, item) in (1..).zip(items) {
            ffi::lua_pushlstring(state, item.as_ptr().cast(), item.len());
            ffi::lua_rawseti_(state, -2, idx);
        }
        if reused {
            // The global still names it: runs leave KEYS and ARGV set, as Redis does.
            ffi::lua_settop(state, -2);
        } else {
            ffi::lua_pushvalue(state, name);
            ffi::lua_insert(state, -2);
            ffi::lua_rawset(state, ffi::LUA_GLOBALSINDEX);
        }
    }
}

/// The length of the value on top of the stack if it is a table with no metatable whose keys
/// are exactly 1..=n for some n <= [`REUSED_ARRAY_MAX`]; None otherwise. Leaves the stack as
/// it found it.
///
/// # Safety
/// `state` has 2 free stack slots and a value on top.
#[allow(unsafe_code)]
unsafe fn plain_array_len(state: *mut ffi::lua_State) -> Option<i64> {
    // SAFETY: only the top value and the values pushed here are read; every push is popped.
    unsafe {
        if ffi::lua_type(state, -1) != ffi::LUA_TTABLE {
            return None;
        }
        if ffi::lua_getmetatable(state, -1) != 0 {
            ffi::lua_settop(state, -2);
            return None;
        }
        let (mut count, mut max_key) = (0i64, 0f64);
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, -2) != 0 {
            // [table, key, value]
            ffi::lua_settop(state, -2);
            let key = ffi::lua_tonumber(state, -1);
            count += 1;
            max_key = max_key.max(key);
            let plain = ffi::lua_type(state, -1) == ffi::LUA_TNUMBER
                && key.fract() == 0.0
                && key >= 1.0
                && count <= REUSED_ARRAY_MAX;
            if !plain {
                ffi::lua_settop(state, -2);
                return None;
            }
        }
        // `count` distinct integer keys, none above `count`: they are 1..=count.
        (max_key <= count as f64).then_some(count)
    }
}

/// How much the interpreter's memory may grow past what the last collection step left before
/// a run ends with another step (see [`Engine::run`]).
const GC_GROWTH: usize = 16 << 10;

/// The most keys and arguments a run pushes as strings rather than as tables (each takes a
/// slot of Lua's C stack, which is bounded).
const MAX_PUSHED_STRINGS: usize = 64;

fn fill(lua: &Lua, items: &[Bytes]) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(items.len(), 0)?;
    for (idx, item) in items.iter().enumerate() {
        table.raw_set(idx + 1, lua.create_string(item)?)?;
    }
    Ok(table)
}

/// `REDIS_VERSION_NUM`: 0x00MMmmpp.
fn version_num(version: &str) -> i64 {
    let mut parts = version.split('.').map(|p| p.parse::<i64>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    let patch = parts.next().unwrap_or(0);
    (major << 16) | (minor << 8) | patch
}

/// An error text on one line, as Redis's `addReplyErrorFormat` makes it.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

/// The client a script's commands run as.
fn script_client() -> Client {
    // Nothing is ever pushed to a script's client; the channel only completes its state.
    let (push, pushes) = tokio::sync::mpsc::unbounded_channel();
    let handle = Arc::new(crate::server::ClientHandle {
        id: crate::cmd::SCRIPT_CLIENT_ID,
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into(),
        local_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into(),
        created: std::time::Instant::now(),
        last_interaction_ms: Default::default(),
        name: Default::default(),
        db: Default::default(),
        resp: 2.into(),
        last_command: Default::default(),
        killed: Default::default(),
        kill: Default::default(),
        fd: -1,
        info: Default::default(),
        push,
        awaiting_seq: Default::default(),
        user: std::sync::Mutex::new(bytes::Bytes::from_static(b"default")),
    });
    Client {
        id: crate::cmd::SCRIPT_CLIENT_ID,
        db: 0,
        authenticated: true,
        close_after_reply: false,
        handle,
        subs: crate::pubsub::ClientSubscriptions::new(),
        multi: None,
        multi_failed: false,
        watched: crate::cmd::transaction::Watched::default(),
        // Blocking commands never block inside a script, as inside EXEC.
        in_exec: true,
        blocked: None,
        block_retry: false,
        replay: false,
        conn: crate::cmd::client::ConnState::new(pushes),
        acl: crate::acl::ClientAcl::superuser(),
        acl_caller: None,
    }
}

/// What `redis.call` works with.
struct CallState {
    server: Weak<Server>,
    client: Client,
    reply: Out,
    read_only: bool,
    /// The script declared `allow-oom`: its commands run even over `maxmemory`.
    allow_oom: bool,
    /// `script-memory-limit` for the run, which the runner sets (`raw.limit`) and each
    /// `redis.call` lifts while it works (see [`LiftedLimit`]).
    memory_limit: usize,
    run_state: Arc<RunState>,
    /// The last `redis.call`'s arguments vector, emptied: the next one fills it.
    argv: Vec<Bytes>,
}

/// The script's memory limit lifted while a `redis.call` builds its reply in Lua, and set again
/// when it is dropped. With a limit set, mlua makes each of its steps a protected call (a new
/// C closure and a `lua_pcall`); the reply is bounded by what the command returned, and the
/// script's next allocation is checked against the limit again.
struct LiftedLimit<'a> {
    lua: &'a Lua,
    limit: usize,
}

impl<'a> LiftedLimit<'a> {
    fn new(lua: &'a Lua) -> Self {
        let limit = lua.set_memory_limit(0).unwrap_or(0);
        LiftedLimit { lua, limit }
    }
}

impl Drop for LiftedLimit<'_> {
    fn drop(&mut self) {
        let _ = self.lua.set_memory_limit(self.limit);
    }
}

impl CallState {
    /// One `redis.call`/`redis.pcall`: the reply as a Lua value, and whether it is an error (the
    /// `redis.call` wrapper raises it).
    fn call(&mut self, lua: &Lua, argv: &[Bytes]) -> mlua::Result<(Value, bool)> {
        // One upgrade per call: each is a read-modify-write of the server's shared count.
        let server = self.server.upgrade();
        let checked = self.check(server.as_deref(), argv);
        if let Err(msg) = checked {
            // A refusal counts as an error reply and as the command's rejected call, as
            // Redis's scriptCall counts it.
            if let Some(server) = &server {
                server.stats.count_error(format!("-{msg}").as_bytes());
                let stats = argv
                    .first()
                    .and_then(|name| lookup(name))
                    .and_then(|(idx, _)| server.command_stats.get(idx));
                if let Some(stats) = stats {
                    stats.rejected_calls.fetch_add(1, Ordering::Relaxed);
                }
            }
            let (value, failed) = error_value(lua, &msg)?;
            mark_counted(&value)?;
            return Ok((value, failed));
        }
        let Ok((idx, command)) = checked else {
            return error_value(lua, "ERR Unknown Redis command called from script");
        };
        let Some(server) = server else {
            return error_value(lua, "ERR the server is shutting down");
        };
        self.reply.buf.clear();
        dispatch(
            &server,
            &mut self.client,
            &mut self.reply,
            idx,
            command,
            argv,
        );
        // A blocking command that found nothing must not wait: it replies as on timeout.
        if let Some(request) = self.client.blocked.take() {
            match request.on_timeout {
                crate::blocking::TimeoutReply::NullArray => self.reply.null_array(),
                crate::blocking::TimeoutReply::Null => self.reply.null(),
            }
        }
        // An integer, the commonest reply, is read without decoding a frame.
        if let Some(n) = integer_reply(&self.reply.buf) {
            return Ok((Value::Number(n as f64), false));
        }
        let limits = Limits {
            max_bulk_len: u64::MAX,
            max_multibulk_len: u64::MAX,
            ..Limits::default()
        };
        let Ok(Some((frame, _))) = decode_frame(&self.reply.buf, &limits) else {
            return error_value(lua, "ERR reply could not be read back");
        };
        let failed = matches!(frame, Frame::Error(_));
        let value = if self.reply.version == RespVersion::Resp3 {
            frame_to_lua_resp3(lua, &frame)?
        } else {
            frame_to_lua(lua, &frame)?
        };
        if failed {
            // Dispatch counted it.
            mark_counted(&value)?;
        }
        Ok((value, failed))
    }

    /// Redis's checks before a script's command runs: the command and its index in the
    /// table. Err is the error text.
    fn check(
        &mut self,
        server: Option<&Server>,
        argv: &[Bytes],
    ) -> Result<(usize, &'static crate::cmd::Command), String> {
        let Some((idx, command)) = argv.first().and_then(|name| lookup(name)) else {
            return Err("ERR Unknown Redis command called from script".into());
        };
        let argc = i32::try_from(argv.len()).unwrap_or(i32::MAX);
        if (command.arity > 0 && argc != command.arity) || argc < -command.arity {
            return Err("ERR Wrong number of args calling Redis command from script".into());
        }
        if command.has_flag(Flags::NOSCRIPT) || super::denied_subcommand(idx, command, argv) {
            return Err("ERR This Redis command is not allowed from script".into());
        }
        if let Some(server) = server
            && let Err((denied, _)) = crate::acl::check(
                server,
                &mut self.client,
                idx,
                argv,
                crate::acl::Context::Lua,
            )
        {
            let reason = match denied {
                crate::acl::Denied::Command => "can't run this command or subcommand",
                crate::acl::Denied::Key(_) => {
                    "can't access at least one of the keys mentioned in the command arguments"
                }
                crate::acl::Denied::Channel(_) => {
                    "can't publish to the channel mentioned in the command"
                }
            };
            return Err(format!("ERR The user executing the script {reason}"));
        }
        let write = command.has_flag(Flags::WRITE);
        if self.read_only && (write || command.has_flag(Flags::MAY_REPLICATE)) {
            return Err("ERR Write commands are not allowed from read-only scripts.".into());
        }
        // Redis's scriptVerifyOOM: over maxmemory when the script started, a command that
        // needs memory is refused until the script has written (it cannot stop half-way).
        if command.has_flag(Flags::DENYOOM)
            && !self.allow_oom
            && !self.run_state.wrote()
            && crate::evict::pre_command_oom()
            && server.is_some_and(|server| {
                server
                    .tunables
                    .maxmemory
                    .load(std::sync::atomic::Ordering::Relaxed)
                    != 0
            })
        {
            return Err(crate::evict::OOM.to_string());
        }
        if write && server.is_some_and(crate::replication::replica::script_writes_refused) {
            return Err(crate::replication::replica::READONLY.to_owned());
        }
        if write {
            let refused = server.is_some_and(crate::persistence::writes_refused);
            if !self.run_state.wrote() && refused {
                return Err(crate::persistence::MISCONF.to_string());
            }
            // Redis's scriptVerifyWriteCommandAllow: the first write of a script is refused
            // while min-replicas-to-write is not met.
            let no_replicas = server.is_some_and(crate::replication::primary::writes_refused);
            if !self.run_state.wrote() && no_replicas {
                return Err(crate::cmd::meta::Refusal::NoReplicas.to_string());
            }
            self.run_state.mark_wrote();
        }
        Ok((idx, command))
    }
}

std::thread_local! {
    /// The engine whose script this thread runs ([`Engine::run`] sets it for the run), for
    /// `redis.call`, a plain C function with no state of its own.
    static RUNNING: Cell<*const Engine> = const { Cell::new(std::ptr::null()) };
}

/// Sets [`RUNNING`] for a run and restores what it was when dropped.
struct Running(*const Engine);

impl Running {
    fn new(engine: &Engine) -> Running {
        Running(RUNNING.with(|running| running.replace(engine)))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.with(|running| running.set(self.0));
    }
}

/// What [`call_pushing`] left on the stack.
enum Pushed {
    /// The command's reply.
    Reply,
    /// The command's error reply (an error table): `redis.call` raises it, `redis.pcall`
    /// returns it.
    Failed,
    /// An error every caller raises (the interpreter could not build the reply).
    Raise,
}

/// `redis.call` (a `lua_CFunction`).
#[allow(unsafe_code)]
unsafe extern "C-unwind" fn redis_call(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: Lua calls it with a valid state and its arguments on the stack.
    unsafe { redis_call_entry(state, true) }
}

/// `redis.pcall` (a `lua_CFunction`).
#[allow(unsafe_code)]
unsafe extern "C-unwind" fn redis_pcall(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: Lua calls it with a valid state and its arguments on the stack.
    unsafe { redis_call_entry(state, false) }
}

/// `redis.call` and `redis.pcall` as plain C functions rather than mlua callbacks: the
/// arguments are read from the stack as Redis reads them, without an mlua `MultiValue` of
/// string handles, and integer replies go on the stack directly (docs/benchmarks.md,
/// "Scripts"). [`call_pushing`] does the work and leaves one value on the stack; every Rust
/// value it made is dropped when it returns, so raising the error here (a `longjmp` past this
/// frame) leaks nothing; a panic is caught and turned into an error first.
///
/// # Safety
/// Called by Lua as a C function: `state` is valid, the arguments are on its stack.
#[allow(unsafe_code)]
unsafe fn redis_call_entry(state: *mut ffi::lua_State, raise_failure: bool) -> c_int {
    let pushed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: as this function's contract says.
        unsafe { call_pushing(state) }
    }));
    // SAFETY: the value raised or returned is on top of the stack, which has room for the
    // one message pushed after a panic (Lua gives a C function LUA_MINSTACK free slots, and
    // `call_pushing` pushes at most three).
    unsafe {
        match pushed {
            Ok(Pushed::Reply) => 1,
            Ok(Pushed::Failed) if !raise_failure => 1,
            Ok(Pushed::Failed | Pushed::Raise) => ffi::lua_error(state),
            Err(payload) => {
                drop(payload);
                ffi::lua_pushstring(state, c"ERR redis.call failed".as_ptr());
                ffi::lua_error(state)
            }
        }
    }
}

/// Runs the command a `redis.call` names and pushes its reply (or error) onto the stack in
/// place of the arguments. Raises no Lua error itself: the memory limit is lifted meanwhile,
/// and it pushes at most three values where Lua guarantees a C function LUA_MINSTACK.
///
/// # Safety
/// As [`redis_call_entry`].
#[allow(unsafe_code)]
unsafe fn call_pushing(state: *mut ffi::lua_State) -> Pushed {
    // SAFETY: the engine outlives its run, during which only its thread calls this; the stack
    // reads and pushes use indices 1..=n_args of this frame and its top.
    unsafe {
        let Some(engine) = RUNNING.with(Cell::get).as_ref() else {
            ffi::lua_settop(state, 0);
            ffi::lua_pushstring(state, c"ERR redis.call outside a script".as_ptr());
            return Pushed::Raise;
        };
        let n_args = ffi::lua_gettop(state);
        let args = {
            let mut calls = lock(&engine.calls);
            let mut argv = std::mem::take(&mut calls.argv);
            let read = read_call_args(state, n_args, &mut argv);
            calls.argv = argv;
            read
        };
        // The arguments are copied: their slots are freed for what follows (up to 7999 of
        // them leave no room for mlua's own checks of the stack otherwise).
        ffi::lua_settop(state, 0);
        let lua = &engine.lua;
        let _lifted = LiftedLimit::new(lua);
        let result = match args {
            Err(text) => error_value(lua, text),
            Ok(()) => {
                let mut calls = lock(&engine.calls);
                let argv = std::mem::take(&mut calls.argv);
                let result = calls.call(lua, &argv);
                calls.argv = argv;
                calls.argv.clear();
                result
            }
        };
        let (value, failed) = match result {
            Ok(reply) => reply,
            Err(err) => {
                let text = format!("ERR {}", mlua_error_text(&err));
                ffi::lua_pushlstring(state, text.as_ptr().cast(), text.len());
                return Pushed::Raise;
            }
        };
        match value {
            Value::Integer(n) => ffi::lua_pushinteger(state, n as ffi::lua_Integer),
            Value::Number(n) => ffi::lua_pushnumber(state, n),
            Value::Boolean(b) => ffi::lua_pushboolean(state, c_int::from(b)),
            Value::Nil => ffi::lua_pushnil(state),
            other => {
                if engine.scratch.raw_set(1, other).is_err() {
                    ffi::lua_pushstring(state, c"ERR reply could not be built".as_ptr());
                    return Pushed::Raise;
                }
                ffi::lua_rawgeti_(state, ffi::LUA_REGISTRYINDEX, engine.scratch_key.id());
                ffi::lua_rawgeti_(state, -1, 1);
                ffi::lua_pushnil(state);
                ffi::lua_rawseti_(state, -3, 1);
                ffi::lua_remove(state, -2);
            }
        }
        if failed {
            Pushed::Failed
        } else {
            Pushed::Reply
        }
    }
}

/// Reads a `redis.call`'s arguments into `argv`, as Redis's `luaArgsToRedisArgv` reads them:
/// strings as they are, numbers written as Redis writes a double. Err is the error reply.
///
/// # Safety
/// `state` holds `n_args` values at indices 1..=n_args.
#[allow(unsafe_code)]
unsafe fn read_call_args(
    state: *mut ffi::lua_State,
    n_args: c_int,
    argv: &mut Vec<Bytes>,
) -> Result<(), &'static str> {
    argv.clear();
    if n_args == 0 {
        return Err("ERR Please specify at least one argument for this redis lib call");
    }
    argv.reserve(usize::try_from(n_args).unwrap_or(0));
    for idx in 1..=n_args {
        // SAFETY: `idx` is one of the arguments; a string's bytes are valid while it is on
        // the stack, and are copied at once.
        unsafe {
            match ffi::lua_type(state, idx) {
                ffi::LUA_TNUMBER => {
                    argv.push(Bytes::from(format_double(ffi::lua_tonumber(state, idx))));
                }
                ffi::LUA_TSTRING => {
                    let mut len = 0usize;
                    let ptr = ffi::lua_tolstring(state, idx, &mut len);
                    argv.push(Bytes::copy_from_slice(std::slice::from_raw_parts(
                        ptr.cast::<u8>(),
                        len,
                    )));
                }
                _ => {
                    argv.clear();
                    return Err("ERR Lua redis lib command arguments must be strings or integers");
                }
            }
        }
    }
    Ok(())
}

/// The value of `reply` if it is exactly one RESP integer (`:N\r\n`).
fn integer_reply(reply: &[u8]) -> Option<i64> {
    let digits = reply.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// An error reply as `redis.call` hands it to Lua: `{err=...}`, flagged as an error.
fn error_value(lua: &Lua, text: &str) -> mlua::Result<(Value, bool)> {
    let table = lua.create_table()?;
    table.raw_set("err", text)?;
    Ok((Value::Table(table), true))
}

/// The field Redis sets in an error table whose error INFO has counted already (a command's
/// error reply, or the refusal of a script's command), so the script's own error reply built
/// from it is not counted a second time.
const COUNTED_FIELD: &str = "ignore_error_stats_update";

/// Marks an error table as counted (see [`COUNTED_FIELD`]).
fn mark_counted(value: &Value) -> mlua::Result<()> {
    if let Value::Table(table) = value {
        table.raw_set(COUNTED_FIELD, true)?;
    }
    Ok(())
}

/// Returns true if and only if `table` is an error table marked as counted.
fn counted_error(table: &Table) -> bool {
    matches!(table.raw_get::<Value>("err"), Ok(Value::String(_)))
        && matches!(
            table.raw_get::<Value>(COUNTED_FIELD),
            Ok(Value::Boolean(true))
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lrand48_matches_the_c_library() {
        // glibc's lrand48() after srand48(0)... Redis's state starts unseeded at 0x1234ABCD330E;
        // its first outputs are those of lrand48 without srand48.
        let mut rand = Lrand48::default();
        assert_eq!(rand.next(), 851_401_618);
        assert_eq!(rand.next(), 1_804_928_587);
        rand.seed(0);
        assert_eq!(rand.next(), 366_850_414);
    }

    #[test]
    fn shebang_flags() {
        assert!(parse_shebang(b"return 1").unwrap().0.compat);
        let (flags, len) = parse_shebang(b"#!lua flags=no-writes,allow-oom\nreturn 1").unwrap();
        assert!(flags.no_writes && flags.allow_oom && !flags.compat);
        assert_eq!(len, 31);
        assert_eq!(
            parse_shebang(b"#!lua").unwrap_err(),
            "ERR Invalid script shebang"
        );
        assert_eq!(
            parse_shebang(b"#!python\n").unwrap_err(),
            "ERR Unexpected engine in script shebang: #!python"
        );
        assert_eq!(
            parse_shebang(b"#!lua flags=bad\n").unwrap_err(),
            "ERR Unexpected flag in script shebang: bad"
        );
        assert_eq!(
            parse_shebang(b"#!lua x=1\n").unwrap_err(),
            "ERR Unknown lua shebang option: x=1"
        );
    }

    #[test]
    fn sha1_of_empty_string() {
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }
}
