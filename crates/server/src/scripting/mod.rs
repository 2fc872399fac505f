//! Lua scripting as Redis 7.0 embeds it: EVAL scripts, FUNCTION libraries, and the busy-script
//! protocol.
//!
//! # Layout
//! - `engine.rs`: the one Lua 5.1 interpreter (mlua, vendored), its sandbox (`sandbox.lua`), the
//!   script cache and function libraries, and running a script against the server's commands.
//! - `convert.rs`: replies both ways: a command's RESP reply into Lua values, a script's Lua
//!   result into the client's reply, as Redis's `script_lua.c` does.
//! - `libs.rs`: the libraries Redis bundles (`bit`, `cjson`, `cmsgpack`, `struct`).
//!
//! # Atomicity
//! A script holds the command gate exclusively for its whole run, as EXEC does: no other
//! client's command, and no snapshot cut, falls between two of its commands. Its own
//! `redis.call`s go straight to `cmd::dispatch`, without the gate.
//!
//! # Busy scripts
//! While a script runs, other commands wait (the gate is held). A Lua count hook looks at the
//! clock every [`HOOK_INSTRUCTIONS`] instructions; past `busy-reply-threshold` the script is
//! *busy*: waiting commands are woken and refused with `-BUSY`, except those Redis allows then
//! (SCRIPT KILL, FUNCTION KILL, SHUTDOWN NOSAVE and the `allow_busy` commands), which run
//! without the gate. SCRIPT KILL sets a flag the hook turns into an error inside the script; a
//! script that has written is refused that (`-UNKILLABLE`), and only SHUTDOWN NOSAVE, which the
//! hook also obeys, ends it.
//!
//! Not yet: a script's effects are not yet propagated anywhere (no AOF or replication exists).

mod convert;
pub(crate) mod dump;
pub(crate) mod engine;
pub(crate) mod functions;
mod libs;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use forkless_storage::SharedGate;

use crate::cmd::meta::{Flags, Gate};
use crate::cmd::{Command, eq_ignore_case};
use crate::server::{Server, lock};

pub(crate) use engine::{Engine, RunOutcome};

/// Lua instructions between two looks at the clock and the kill flag (Redis's figure).
pub(crate) const HOOK_INSTRUCTIONS: u32 = 100_000;

/// Redis's replies to other clients while a script is busy.
pub(crate) const BUSY_EVAL: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
pub(crate) const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";

/// What the server keeps for scripting.
#[derive(Default)]
pub(crate) struct Scripting {
    /// The interpreter, created on first use. Held for a whole script run (under the exclusive
    /// gate) and by the commands that change the script cache or the libraries; never by the
    /// commands that run while a script is busy, which read only [`RunState`].
    engine: Mutex<Option<Engine>>,
    /// The function libraries and their own interpreter, created on first use. Same rules as
    /// `engine`.
    functions: Mutex<Option<functions::Functions>>,
    pub(crate) run: Arc<RunState>,
    /// Libraries and functions loaded, for FUNCTION STATS, which answers while a function
    /// holds `functions`.
    function_counts: Mutex<(usize, usize)>,
}

impl std::fmt::Debug for Scripting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripting").finish_non_exhaustive()
    }
}

/// The script now running, as other threads see it: plain flags, so SCRIPT KILL and the busy
/// check never wait for the interpreter.
#[derive(Debug, Default)]
pub(crate) struct RunState {
    running: AtomicBool,
    busy: AtomicBool,
    kill_requested: AtomicBool,
    /// Set when the running script has run a write command: it can no longer be killed.
    wrote: AtomicBool,
    /// `busy-reply-threshold` in milliseconds for the running script (0: never busy).
    threshold_ms: AtomicU64,
    /// Set by SHUTDOWN NOSAVE while a script is busy: the script stops at the next hook.
    abort: AtomicBool,
    /// When FUNCTION LOAD must give up running a library's code (Redis allows 500 ms).
    load_deadline: Mutex<Option<Instant>>,
    /// Script commands between admission and the start of their run (waiting for the gate):
    /// other commands wait for them as for a running script rather than sleep on the gate.
    pending: AtomicUsize,
    /// True when the running script came from EVAL (SCRIPT KILL), false for FCALL.
    eval: AtomicBool,
    /// The running script's name and command line, for FUNCTION STATS. Kept between runs
    /// (`CurrentRun::active` says whether one runs), so a run refills its buffers rather than
    /// allocating new ones.
    current: Mutex<CurrentRun>,
    /// Waiting commands sleep here until the script ends or turns busy.
    changed: Condvar,
    changed_lock: Mutex<()>,
    /// Commands sleeping on `changed`, so that a script's end costs no wake-up when none waits.
    sleepers: AtomicUsize,
    /// Commands in `admit`'s wait for a script (spinning or sleeping), and how many have left
    /// it: a batch cut by its bound lets them in before its connection starts the next one
    /// ([`let_waiters_in`]).
    waiting: AtomicUsize,
    admitted: AtomicU64,
    /// Set while a batch (`ScriptBatch`) runs its second script or a later one: a batch lasts
    /// longer than `admit`'s spin, so a command that meets one sleeps at once instead of
    /// burning the core the batch's thread or the clients need (docs/benchmarks.md, "Scripts").
    batching: AtomicBool,
    /// Hook calls of the running script that have tried to hand its async worker over (see
    /// [`hand_off_worker`]).
    hand_offs: AtomicUsize,
    /// Connections waiting, as tasks, for scripts running on another worker before they start
    /// their own ([`wait_for_scripts`]): woken with the thread sleepers, by the thread that ends
    /// the run, so their tasks move to that thread's queue and the interpreter stays on one core.
    task_waiters: AtomicUsize,
    tasks_woken: tokio::sync::Notify,
}

#[derive(Debug, Clone)]
pub(crate) struct RunningScript {
    pub(crate) name: String,
    pub(crate) argv: Vec<Bytes>,
    pub(crate) started: Instant,
}

/// [`RunState::current`]'s slot: the last run's buffers, and whether it is still running.
#[derive(Debug)]
struct CurrentRun {
    active: bool,
    script: RunningScript,
}

impl Default for CurrentRun {
    fn default() -> Self {
        CurrentRun {
            active: false,
            script: RunningScript {
                name: String::new(),
                argv: Vec::new(),
                started: Instant::now(),
            },
        }
    }
}

impl RunState {
    /// Returns true if and only if a script is running.
    pub(crate) fn running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Returns true if and only if the running script passed `busy-reply-threshold`.
    pub(crate) fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    pub(crate) fn kill_requested(&self) -> bool {
        self.kill_requested.load(Ordering::Acquire)
    }

    /// Returns true if and only if the running script has written.
    pub(crate) fn wrote(&self) -> bool {
        self.wrote.load(Ordering::Acquire)
    }

    /// Asks the running script to stop whatever it did (SHUTDOWN NOSAVE).
    pub(crate) fn abort(&self) {
        self.abort.store(true, Ordering::Release);
    }

    /// The Lua count hook: turns busy past the threshold, and stops the script when it was
    /// killed or the server is shutting down.
    pub(crate) fn on_hook(&self) -> mlua::Result<mlua::VmState> {
        if lock(&self.load_deadline).is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(mlua::Error::RuntimeError("FUNCTION LOAD timeout".into()));
        }
        if self.abort.load(Ordering::Acquire) {
            return Err(mlua::Error::RuntimeError(
                "Script aborted: the server is shutting down".into(),
            ));
        }
        if self.kill_requested() {
            tracing::warn!("Lua script killed by user with SCRIPT KILL.");
            let text = if self.eval.load(Ordering::Acquire) {
                "Script killed by user with SCRIPT KILL..."
            } else {
                "Script killed by user with FUNCTION KILL..."
            };
            return Err(mlua::Error::RuntimeError(text.into()));
        }
        if self.hand_offs.fetch_add(1, Ordering::AcqRel) < HAND_OFF_ATTEMPTS {
            hand_off_worker();
        }
        let threshold = self.threshold_ms.load(Ordering::Relaxed);
        if threshold > 0 && !self.busy() {
            if let Some(current) = self.current() {
                let elapsed = current.started.elapsed();
                if elapsed >= Duration::from_millis(threshold) {
                    let eval = self.eval.load(Ordering::Acquire);
                    tracing::warn!(
                        "Slow script detected: still in execution after {} milliseconds. You can \
                         try killing the script using the {} command. Script name is: {}.",
                        elapsed.as_millis(),
                        if eval { "SCRIPT KILL" } else { "FUNCTION KILL" },
                        current.name
                    );
                    self.set_busy();
                }
            }
        }
        Ok(mlua::VmState::Continue)
    }

    /// Starts FUNCTION LOAD's time limit; it ends when the returned guard is dropped.
    pub(crate) fn load_deadline(&self) -> LoadDeadline<'_> {
        *lock(&self.load_deadline) = Some(Instant::now() + Duration::from_millis(500));
        LoadDeadline { run: self }
    }

    pub(crate) fn mark_wrote(&self) {
        self.wrote.store(true, Ordering::Release);
    }

    pub(crate) fn current(&self) -> Option<RunningScript> {
        let current = lock(&self.current);
        current.active.then(|| current.script.clone())
    }

    fn begin(&self, name: &str, argv: &[Bytes], eval: bool, threshold_ms: u64) {
        self.threshold_ms.store(threshold_ms, Ordering::Relaxed);
        self.hand_offs.store(0, Ordering::Release);
        self.abort.store(false, Ordering::Release);
        {
            let mut current = lock(&self.current);
            current.active = true;
            current.script.name.clear();
            current.script.name.push_str(name);
            current.script.argv.clear();
            current.script.argv.extend_from_slice(argv);
            current.script.started = Instant::now();
        }
        self.kill_requested.store(false, Ordering::Release);
        self.wrote.store(false, Ordering::Release);
        self.busy.store(false, Ordering::Release);
        self.eval.store(eval, Ordering::Release);
        self.running.store(true, Ordering::Release);
    }

    fn end(&self) {
        self.running.store(false, Ordering::SeqCst);
        self.busy.store(false, Ordering::Release);
        self.kill_requested.store(false, Ordering::Release);
        {
            let mut current = lock(&self.current);
            current.active = false;
            // The arguments share the connection's read buffer: let it go now. A long
            // command line's vector is not kept either.
            current.script.argv.clear();
            if current.script.argv.capacity() > 64 {
                current.script.argv = Vec::new();
            }
        }
        // While the run's command is still counted as pending (every script command is), the
        // waiters could not go on yet: its `PendingGuard` wakes them, one wake-up, not two.
        if self.pending.load(Ordering::SeqCst) == 0 {
            self.wake();
        }
    }

    /// Marks the script busy and wakes the commands waiting for it, so they reply `-BUSY`.
    pub(crate) fn set_busy(&self) {
        if !self.busy.swap(true, Ordering::SeqCst) {
            self.wake();
        }
    }

    fn wake(&self) {
        if self.task_waiters.load(Ordering::SeqCst) != 0 {
            if self.busy() {
                // All of them, for their `-BUSY`.
                self.tasks_woken.notify_waiters();
            } else {
                // One: it runs next on this thread (tokio puts a task woken on a worker in that
                // worker's next slot), and its own end wakes the next. Waking them all would
                // queue them behind it, and tokio wakes an idle worker to steal queued tasks:
                // the turn-taking again.
                self.tasks_woken.notify_one();
            }
        }
        if self.sleepers.load(Ordering::SeqCst) == 0 {
            return;
        }
        let _guard = lock(&self.changed_lock);
        self.changed.notify_all();
    }

    /// Returns true if and only if the running script came from EVAL.
    pub(crate) fn is_eval(&self) -> bool {
        self.eval.load(Ordering::Acquire)
    }

    /// The `-BUSY` reply for the running script's kind.
    pub(crate) fn busy_reply(&self) -> &'static str {
        if self.eval.load(Ordering::Acquire) {
            BUSY_EVAL
        } else {
            BUSY_FUNCTION
        }
    }

    /// SCRIPT KILL (`eval` true) or FUNCTION KILL: the reply.
    pub(crate) fn kill(&self, eval: bool) -> Result<(), &'static str> {
        if !self.running() {
            return Err("NOTBUSY No scripts in execution right now.");
        }
        if self.wrote.load(Ordering::Acquire) {
            return Err(
                "UNKILLABLE Sorry the script already executed write commands against the dataset. \
                 You can either wait the script termination or kill the server in a hard way using \
                 the SHUTDOWN NOSAVE command.",
            );
        }
        let running_eval = self.eval.load(Ordering::Acquire);
        if eval && !running_eval {
            return Err(BUSY_FUNCTION);
        }
        if !eval && running_eval {
            return Err(BUSY_EVAL);
        }
        self.kill_requested.store(true, Ordering::Release);
        Ok(())
    }
}

/// FUNCTION LOAD's time limit, while a library's code runs.
pub(crate) struct LoadDeadline<'a> {
    run: &'a RunState,
}

impl Drop for LoadDeadline<'_> {
    fn drop(&mut self) {
        *lock(&self.run.load_deadline) = None;
    }
}

/// A script command on its way to run: counted from before it waits for the gate until it is
/// done.
pub(crate) struct PendingGuard<'a> {
    run: &'a RunState,
}

impl<'a> PendingGuard<'a> {
    pub(crate) fn new(run: &'a RunState) -> Self {
        run.pending.fetch_add(1, Ordering::AcqRel);
        PendingGuard { run }
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        // Waiters go on only once nothing is pending (a batch counts as pending across its
        // scripts): the last one out wakes them.
        if self.run.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.run.wake();
        }
    }
}

/// Script commands of one connection's pipeline run back to back under one hold: the command
/// gate held exclusively and the run counted as pending, from the first of them to the last
/// (`conn.rs`, `run_script_batch`). Other commands wait for the batch as for one script (or get
/// `-BUSY` when one of its scripts is busy), the interpreter stays on one core, and the other
/// workers are woken once per batch instead of once per script. Each script is still its own
/// unit: a batch is only ever more atomic than its scripts. Never held across an await (the
/// connection drops it before it writes, waits or reads).
pub(crate) struct ScriptBatch<'a> {
    // Dropped in this order: the gate, then the pending count (which wakes the waiters).
    _gate: forkless_storage::ExclusiveGate<'a>,
    _pending: PendingGuard<'a>,
    batching: &'a AtomicBool,
}

std::thread_local! {
    /// True while this thread holds a [`ScriptBatch`].
    static BATCH_HELD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Returns true if and only if this thread holds a [`ScriptBatch`]: a script command then
/// takes neither the gate nor the admission wait (it holds both already).
pub(crate) fn batch_held() -> bool {
    BATCH_HELD.with(std::cell::Cell::get)
}

/// The commands that run a script or a function, by name: the connection asks for every
/// command it runs, and comparing these few names costs less than the command table's lookup,
/// which the command then makes anyway. The flags decide which they are
/// (`Flags::RUNS_SCRIPT`, `Flags::RUNS_FUNCTION`); the test below holds this list to them.
const SCRIPT_COMMANDS: [&[u8]; 6] = [
    b"evalsha",
    b"eval",
    b"fcall",
    b"evalsha_ro",
    b"eval_ro",
    b"fcall_ro",
];

/// Returns true if and only if `argv` is a command that runs a script or a function (EVAL,
/// EVALSHA, FCALL and their read-only forms).
pub(crate) fn is_script_command(argv: &[Bytes]) -> bool {
    argv.first().is_some_and(|name| {
        SCRIPT_COMMANDS
            .iter()
            .any(|script| name.eq_ignore_ascii_case(script))
    })
}

impl<'a> ScriptBatch<'a> {
    /// Starts a batch for the script command `argv`, once it is admitted as any script command
    /// is (`admit`: it waits for a running script, or is refused while one is busy, in which
    /// case there is no batch and the command runs alone to get its refusal).
    pub(crate) fn begin(server: &'a Server, argv: &[Bytes]) -> Option<ScriptBatch<'a>> {
        let (_, command) = argv.first().and_then(|name| crate::cmd::lookup(name))?;
        if batch_held() {
            return None;
        }
        match admit(server, command, argv) {
            Admission::Run(None) => {}
            Admission::Run(Some(_)) | Admission::Refuse(_) => return None,
        }
        let pending = PendingGuard::new(&server.scripting.run);
        let gate = server.keyspace.gate().exclusive();
        BATCH_HELD.with(|held| held.set(true));
        Some(ScriptBatch {
            _gate: gate,
            _pending: pending,
            batching: &server.scripting.run.batching,
        })
    }
}

impl ScriptBatch<'_> {
    /// Notes that the batch goes on to another script: waiting commands stop spinning.
    pub(crate) fn going_on(&self) {
        self.batching.store(true, Ordering::Relaxed);
    }
}

impl Drop for ScriptBatch<'_> {
    fn drop(&mut self) {
        // Before the gate and the pending count go (fields drop after this): the next script
        // met is a single one until its own batch says otherwise.
        self.batching.store(false, Ordering::Relaxed);
        BATCH_HELD.with(|held| held.set(false));
    }
}

/// How many hook calls of one script try [`hand_off_worker`].
const HAND_OFF_ATTEMPTS: usize = 20;

/// Called from the hook, on the first [`HAND_OFF_ATTEMPTS`] calls of a script (one per
/// 100,000 Lua instructions): hands the tokio worker the script runs on to a fresh thread, so
/// that the connections queued on that worker (one may sit in its LIFO slot, which no other
/// worker steals) are served, and SCRIPT KILL read, while the script goes on here.
/// `block_in_place` moves the worker's core to a new thread and takes it back when its closure
/// returns unless that thread has taken it first; the closure waits a millisecond for that,
/// and a busy machine may need more than one try. Once the core is gone a try costs only the
/// millisecond. Short scripts never reach the hook and pay nothing: running every script under
/// `block_in_place` cost a thread hand-over per script (docs/benchmarks.md, "Scripts").
fn hand_off_worker() {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(1)));
        }
    }
}

/// Marks a script run: begun on creation, ended (and waiters woken) on drop, whatever way the
/// run ends.
pub(crate) struct RunGuard<'a> {
    run: &'a RunState,
}

impl<'a> RunGuard<'a> {
    pub(crate) fn begin(
        run: &'a RunState,
        name: &str,
        argv: &[Bytes],
        eval: bool,
        threshold_ms: u64,
    ) -> Self {
        run.begin(name, argv, eval, threshold_ms);
        RunGuard { run }
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.run.end();
    }
}

impl Scripting {
    /// Runs `f` with the interpreter, creating it first if needed. Err is the error reply when
    /// Lua could not start.
    pub(crate) fn with_engine<R>(
        &self,
        server: &Server,
        f: impl FnOnce(&mut Engine) -> R,
    ) -> Result<R, String> {
        let mut guard = lock(&self.engine);
        if guard.is_none() {
            let server = server
                .arc()
                .map_or_else(Weak::new, |arc| Arc::downgrade(&arc));
            let engine = Engine::new(Arc::clone(&self.run), server)
                .map_err(|err| format!("ERR {}", engine::mlua_error_text(&err)))?;
            *guard = Some(engine);
        }
        match guard.as_mut() {
            Some(engine) => Ok(f(engine)),
            None => Err("ERR scripting engine unavailable".into()),
        }
    }
}

/// The scripting fields of INFO's `# Memory` section, as Redis 7.0 names them. An interpreter
/// busy with a script (INFO called from that script) reports zeros rather than wait for
/// itself.
pub(crate) fn info_memory(server: &Server, text: &mut String) {
    use std::fmt::Write as _;
    let scripting = &server.scripting;
    let (eval_vm, n_scripts, scripts_bytes) = match scripting.engine.try_lock() {
        Ok(guard) => guard.as_ref().map_or((0, 0, 0), |engine| {
            let (n, bytes) = engine.cache_stats();
            (engine.memory(), n, bytes)
        }),
        Err(_) => (0, 0, 0),
    };
    let functions_vm = match scripting.functions.try_lock() {
        Ok(guard) => guard.as_ref().map_or(0, |f| f.engine.memory()),
        Err(_) => 0,
    };
    let (n_libraries, n_functions) = scripting.function_counts();
    let human = crate::info::bytes_to_human;
    let total = eval_vm + functions_vm;
    let lines = [
        ("used_memory_lua", eval_vm.to_string()),
        ("used_memory_vm_eval", eval_vm.to_string()),
        ("used_memory_lua_human", human(eval_vm as u64)),
        ("used_memory_scripts_eval", scripts_bytes.to_string()),
        ("number_of_cached_scripts", n_scripts.to_string()),
        ("number_of_functions", n_functions.to_string()),
        ("number_of_libraries", n_libraries.to_string()),
        ("used_memory_vm_functions", functions_vm.to_string()),
        ("used_memory_vm_total", total.to_string()),
        ("used_memory_vm_total_human", human(total as u64)),
        ("used_memory_functions", "0".to_string()),
        ("used_memory_scripts", scripts_bytes.to_string()),
        ("used_memory_scripts_human", human(scripts_bytes as u64)),
    ];
    for (name, value) in lines {
        let _ = write!(text, "{name}:{value}\r\n");
    }
}

/// The keys of an EVAL/EVALSHA/FCALL-family command line (`name script numkeys key...`), for
/// COMMAND GETKEYS: None for other commands, Err for a bad count.
pub(crate) fn numkeys_keys<'a>(
    command: &Command,
    argv: &'a [Bytes],
) -> Option<Result<&'a [Bytes], ()>> {
    // The EVAL and FCALL families, whose keys follow a count (Redis's `no_mandatory_keys`).
    if !command.has_flag(Flags::NO_MANDATORY_KEYS) {
        return None;
    }
    let count = argv
        .get(2)
        .and_then(|n| crate::cmd::parse_i64(n))
        .and_then(|n| usize::try_from(n).ok());
    Some(match count {
        Some(n) => argv.get(3..3 + n).ok_or(()),
        None => Err(()),
    })
}

/// Returns true if and only if `command` takes the command gate itself (exclusively) rather
/// than having `cmd::execute` take it shared: EXEC and the commands that run scripts.
pub(crate) fn takes_gate_itself(command: &Command) -> bool {
    command.gate == Gate::Exclusive
}

/// Returns true if and only if `command` may run while a script is busy (Redis's
/// `CMD_ALLOW_BUSY` commands, with SCRIPT KILL, FUNCTION KILL/STATS and SHUTDOWN NOSAVE among
/// the subcommands).
fn allowed_while_busy(command: &Command, argv: &[Bytes]) -> bool {
    // SCRIPT KILL, FUNCTION KILL/STATS and SHUTDOWN NOSAVE: Redis's allow-busy sits on the
    // subcommand, or SHUTDOWN refuses itself without NOSAVE, which the table cannot say.
    let sub = argv.get(1).map_or(&b""[..], |b| b);
    match command.name {
        "script" => eq_ignore_case(sub, "kill"),
        "function" => eq_ignore_case(sub, "kill") || eq_ignore_case(sub, "stats"),
        "shutdown" => argv.iter().skip(1).any(|arg| eq_ignore_case(arg, "nosave")),
        _ => command.has_flag(Flags::ALLOW_BUSY),
    }
}

impl Scripting {
    /// Drops the EVAL interpreter and its script cache (SCRIPT FLUSH); the next script starts a
    /// fresh one.
    pub(crate) fn flush_scripts(&self) {
        let old = lock(&self.engine).take();
        drop(old);
    }

    /// Libraries and functions loaded.
    pub(crate) fn function_counts(&self) -> (usize, usize) {
        *lock(&self.function_counts)
    }

    /// Recounts the libraries after a change.
    pub(crate) fn refresh_function_counts(&self) {
        let counts = lock(&self.functions)
            .as_ref()
            .map_or((0, 0), functions::Functions::counts);
        *lock(&self.function_counts) = counts;
    }

    /// Every library's code, for a snapshot: what FUNCTION LOAD was given.
    pub(crate) fn library_codes(&self) -> Vec<Vec<u8>> {
        lock(&self.functions)
            .as_ref()
            .map_or_else(Vec::new, |functions| {
                functions
                    .libraries
                    .values()
                    .map(|library| library.code.to_vec())
                    .collect()
            })
    }

    /// Loads one library read from an RDB file. Err is why it cannot run.
    pub(crate) fn load_library(&self, server: &Server, code: &Bytes) -> Result<(), String> {
        let loaded = self.with_functions(server, |functions| functions.load(code, false))?;
        self.refresh_function_counts();
        loaded.map(drop)
    }

    /// Drops every library and their interpreter (FUNCTION FLUSH).
    pub(crate) fn flush_functions(&self) {
        let old = lock(&self.functions).take();
        drop(old);
    }

    /// Runs `f` with the function libraries, creating their interpreter first if needed.
    pub(crate) fn with_functions<R>(
        &self,
        server: &Server,
        f: impl FnOnce(&mut functions::Functions) -> R,
    ) -> Result<R, String> {
        let mut guard = lock(&self.functions);
        if guard.is_none() {
            let server = server
                .arc()
                .map_or_else(Weak::new, |arc| Arc::downgrade(&arc));
            let created = functions::Functions::new(Arc::clone(&self.run), server)
                .map_err(|err| format!("ERR {}", engine::mlua_error_text(&err)))?;
            *guard = Some(created);
        }
        match guard.as_mut() {
            Some(functions) => Ok(f(functions)),
            None => Err("ERR scripting engine unavailable".into()),
        }
    }
}

/// Returns true if and only if `argv` names a subcommand Redis refuses inside scripts (its
/// `noscript` subcommands of containers whose own row has no such flag). `idx` is the
/// command's index in the table: only a container has subcommands to look up, so a plain
/// command (every `redis.call` of a typical script) costs one table read, not a walk of the
/// subcommand table.
pub(crate) fn denied_subcommand(idx: usize, command: &Command, argv: &[Bytes]) -> bool {
    if !crate::cmd::is_container(idx) {
        return command.has_flag(Flags::ALLOW_BUSY);
    }
    let sub = argv.get(1).map_or(&b""[..], |b| b);
    match command.name {
        "config" | "client" => !eq_ignore_case(sub, "help"),
        // A subcommand Redis marks `noscript` (CLUSTER RESET).
        _ => {
            command.has_flag(Flags::ALLOW_BUSY)
                || crate::cmd::subcommands::find_subcommand(command.name.as_bytes(), sub)
                    .is_some_and(|row| row.flags.contains(Flags::NOSCRIPT))
        }
    }
}

/// What `cmd::execute` does with a command while scripts may be running.
pub(crate) enum Admission<'a> {
    /// Run it holding the gate shared (or, for a command that takes the gate itself, with
    /// nothing held).
    Run(Option<SharedGate<'a>>),
    /// Refuse it with this error.
    Refuse(&'static str),
}

/// Whether a script command writes, as Redis's `getCommandFlags` judges it before the command
/// runs (for CLIENT PAUSE WRITE): a script or function that declares its flags (a shebang,
/// `register_function`'s flags) writes if and only if it does not declare `no-writes`;
/// otherwise (an EVAL without a shebang, a SHA1 not in the cache, an unknown function) the
/// command's own flags say (`write` or `may_replicate`). None for a command that runs no
/// script.
pub(crate) fn declared_writes(server: &Server, command: &Command, argv: &[Bytes]) -> Option<bool> {
    if !command
        .flags
        .intersects(Flags::RUNS_SCRIPT.union(Flags::RUNS_FUNCTION))
    {
        return None;
    }
    let own = command
        .flags
        .intersects(Flags::WRITE.union(Flags::MAY_REPLICATE));
    Some(declared_flags(server, command, argv).map_or(own, |flags| !flags.no_writes))
}

/// The flags the script or function a script command runs declares, when it declares any
/// (not an EVAL script without a shebang); None otherwise, and for other commands.
pub(crate) fn declared_flags(
    server: &Server,
    command: &Command,
    argv: &[Bytes],
) -> Option<engine::ScriptFlags> {
    let target = argv.get(1)?;
    let declared = if command.has_flag(Flags::RUNS_SCRIPT) {
        // EVALSHA's SHA1 names a cached script; EVAL's body carries its own shebang (the
        // cache would hold the same flags for it).
        let cached = if target.len() == 40 {
            server
                .scripting
                .with_engine(server, |engine| {
                    let sha = String::from_utf8_lossy(target).to_ascii_lowercase();
                    engine.script(&sha).map(|(flags, _)| flags)
                })
                .ok()
                .flatten()
        } else {
            None
        };
        cached.or_else(|| engine::parse_shebang(target).ok().map(|(flags, _)| flags))
    } else if command.has_flag(Flags::RUNS_FUNCTION) {
        server
            .scripting
            .with_functions(server, |functions| {
                functions.function(target).map(|function| function.flags)
            })
            .ok()
            .flatten()
    } else {
        None
    };
    declared.filter(|flags| !flags.compat)
}

/// Returns true if and only if a script runs or a script command is on its way to run.
fn scripts_in_progress(run: &RunState) -> bool {
    run.running.load(Ordering::SeqCst) || run.pending.load(Ordering::SeqCst) > 0
}

/// Called by a connection before it starts a script command (outside any batch): while scripts
/// of another connection run and are not busy, its task waits here instead of its thread in
/// [`admit`]. The thread that ends those scripts wakes the task, and tokio queues a task woken
/// on one of its workers on that worker: the next batch of scripts runs on the thread that ran
/// the last one, with the interpreter still in its core's caches, instead of the workers taking
/// turns at it, each turn a sleep and a wake-up of a thread (docs/benchmarks.md, "Scripts").
/// Only an optimisation: [`admit`] still decides, and a script that turns busy ends the wait
/// so that the command gets its `-BUSY`. Returns true if and only if it waited.
pub(crate) async fn wait_for_scripts(server: &Server) -> bool {
    let run = &server.scripting.run;
    let mut waited = false;
    while scripts_in_progress(run) && !run.busy() {
        let notified = run.tasks_woken.notified();
        tokio::pin!(notified);
        // Registered before the flags are read again, so an end now either is seen here or
        // sees this waiter and wakes it (SeqCst on both sides, as for the thread sleepers).
        notified.as_mut().enable();
        let _counted = TaskWaitCount::new(run);
        if scripts_in_progress(run) && !run.busy() {
            notified.await;
            waited = true;
        }
    }
    waited
}

/// Counts a task in [`wait_for_scripts`]'s wait, also when the task is dropped waiting.
struct TaskWaitCount<'a> {
    run: &'a RunState,
}

impl<'a> TaskWaitCount<'a> {
    fn new(run: &'a RunState) -> Self {
        run.task_waiters.fetch_add(1, Ordering::SeqCst);
        TaskWaitCount { run }
    }
}

impl Drop for TaskWaitCount<'_> {
    fn drop(&mut self) {
        self.run.task_waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a command in `admit`'s wait for a script from its first wait to its admission or
/// refusal (see [`RunState::waiting`]).
struct WaitCount<'a> {
    run: &'a RunState,
}

impl<'a> WaitCount<'a> {
    fn new(run: &'a RunState) -> Self {
        run.waiting.fetch_add(1, Ordering::SeqCst);
        WaitCount { run }
    }
}

impl Drop for WaitCount<'_> {
    fn drop(&mut self) {
        self.run.admitted.fetch_add(1, Ordering::SeqCst);
        self.run.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The longest [`let_waiters_in`] waits for one waiting command to get in.
const HAND_OVER_WAIT: Duration = Duration::from_millis(1);

/// Called by a connection whose batch of scripts (`ScriptBatch`) has just ended at its bound,
/// before it runs anything more: while commands of other clients wait for scripts (on other
/// threads), it waits until one of them has got in, for at most [`HAND_OVER_WAIT`]. Without
/// it the connection would take the gate again before a woken waiter could (the gate is not
/// fair), and a long pipeline of scripts would keep the others out until its end.
pub(crate) fn let_waiters_in(server: &Server) {
    let run = &server.scripting.run;
    if run.waiting.load(Ordering::SeqCst) == 0 {
        return;
    }
    let admitted = run.admitted.load(Ordering::SeqCst);
    let give_up = Instant::now() + HAND_OVER_WAIT;
    while run.waiting.load(Ordering::SeqCst) != 0
        && run.admitted.load(Ordering::SeqCst) == admitted
        && Instant::now() < give_up
    {
        std::thread::yield_now();
    }
}

/// Lets a command in: waits while a script runs and is not yet busy, refuses it with `-BUSY`
/// once the script is busy unless Redis allows it then (it then runs without the gate, which
/// the script holds), and otherwise takes the gate shared.
pub(crate) fn admit<'a>(server: &'a Server, command: &Command, argv: &[Bytes]) -> Admission<'a> {
    let gate = server.keyspace.gate();
    let run = &server.scripting.run;
    let itself = takes_gate_itself(command);
    if itself && batch_held() {
        // A script command of this thread's batch: the batch holds the gate and is pending.
        return Admission::Run(None);
    }
    let scripting = || run.running.load(Ordering::SeqCst) || run.pending.load(Ordering::SeqCst) > 0;
    let mut counted: Option<WaitCount<'_>> = None;
    let mut polls = 0u32;
    loop {
        if !scripting() {
            if itself {
                return Admission::Run(None);
            }
            if let Some(shared) = gate.try_shared() {
                return Admission::Run(Some(shared));
            }
            // Held exclusively (a transaction, DEBUG LOADAOF's start): poll for it rather
            // than sleep on the gate, so that a script taking the gate as it is released is
            // seen here, and its busy state answered, instead of waited out whole.
            polls = wait_for_exclusive_holder(polls);
            continue;
        }
        if run.busy() {
            // Redis checks loading before a busy script: a script replayed from the AOF
            // leaves other clients `-LOADING`.
            if server.persistence.loading() && !command.has_flag(Flags::LOADING) {
                return Admission::Refuse(crate::persistence::LOADING);
            }
            if allowed_while_busy(command, argv) {
                if command.name == "shutdown" {
                    // SHUTDOWN NOSAVE ends a busy script: it stops at its next hook.
                    run.abort();
                }
                return Admission::Run(None);
            }
            return Admission::Refuse(run.busy_reply());
        }
        if counted.is_none() {
            counted = Some(WaitCount::new(run));
        }
        // Most scripts take microseconds: spin that long before sleeping.
        let spin_until = Instant::now() + Duration::from_micros(20);
        while scripting()
            && !run.busy()
            && !run.batching.load(Ordering::Relaxed)
            && Instant::now() < spin_until
        {
            std::hint::spin_loop();
        }
        if !scripting() || run.busy() {
            continue;
        }
        // Registered before the flags are read again under the lock, so a script ending now
        // either is seen here or sees this sleeper and wakes it (SeqCst on both sides).
        run.sleepers.fetch_add(1, Ordering::SeqCst);
        let guard = lock(&run.changed_lock);
        if scripting() && !run.busy() {
            // A bounded wait: the flags are read again whatever woke us.
            let _ = run
                .changed
                .wait_timeout(guard, Duration::from_millis(50))
                .map(drop);
        }
        run.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One wait of [`admit`]'s poll for an exclusive holder of the gate: a spin for the first
/// rounds (transactions take microseconds), then yields, then sleeps of 100 us, so a long
/// holder (DEBUG SLEEP, a big EXEC) costs its waiters little CPU. Returns the next round.
fn wait_for_exclusive_holder(polls: u32) -> u32 {
    match polls {
        0..64 => std::hint::spin_loop(),
        64..128 => std::thread::yield_now(),
        _ => std::thread::sleep(Duration::from_micros(100)),
    }
    polls.saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_commands_by_name_are_those_flagged_to_run_scripts() {
        // `is_script_command` compares names rather than looking the flags up.
        for command in crate::cmd::all_commands() {
            let runs = command
                .flags
                .intersects(Flags::RUNS_SCRIPT.union(Flags::RUNS_FUNCTION));
            for name in [command.name.to_ascii_uppercase(), command.name.to_string()] {
                assert_eq!(
                    is_script_command(&[Bytes::from(name)]),
                    runs,
                    "{}",
                    command.name
                );
            }
        }
        assert!(is_script_command(&[Bytes::from_static(b"EvalSha")]));
        assert!(!is_script_command(&[Bytes::from_static(b"evalsha2")]));
        assert!(!is_script_command(&[]));
    }
}
