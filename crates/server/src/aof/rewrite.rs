//! The AOF rewrite without fork: a new incr file opened at an epoch cut, the new base written
//! from the cut by the same save as BGSAVE, then the manifest switched over.
//!
//! 1. Create the next incr file and persist the manifest listing it after the old incrs (as
//!    Redis's `openNewIncrAofForAppend`); attach its writer (it keeps what it gets until
//!    step 3). While the AOF is being switched on (or with the AOF off) the file is Redis's
//!    temp incr (`temp-<appendfilename>.incr`), listed nowhere until step 5.
//! 2. Take the cut. Every effect numbered below `cut.seq()` is in the cut; every other after.
//! 3. The new writer logs from `cut.seq()`, the old one stops there; once the old one has every
//!    effect below the cut, it flushes, fsyncs and is detached.
//! 4. The new writer's thread starts; the base is saved from the cut.
//! 5. The manifest becomes the new base and the new incr; the old files become history and are
//!    deleted.
//!
//! A failed save leaves the manifest of step 1, which is complete: the old incrs hold every
//! effect below the cut, the new one every effect from it. A crash at any step loses nothing
//! for the same reason (the new incr gets nothing before the old writer has written all it
//! owns). Started by a command, steps 1 and 2 run on the command's thread before it replies, as
//! Redis forks before it replies; the rest runs on a `forkless-aofrw` thread.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use forkless_snapshot::backend::Overrides;
use forkless_snapshot::backend::fork::{self, ChildReport, ForkedSave};
use forkless_snapshot::save::{self, Compression, Progress, SaveOptions, TraversalPriority};

use super::manifest::{Entry, FileType, Manifest};
use super::writer::Writer;
use super::{Active, Names};
use crate::config::Config;
use crate::effects::ConsumerId;
use crate::server::{Server, unix_ms};

/// BGREWRITEAOF's reply when one runs already, as Redis.
pub(crate) const ALREADY: &str = "ERR Background append only file rewriting already in progress";

/// BGREWRITEAOF's reply when the rewrite could not start (the new incr file, the manifest or
/// the fork failed), as Redis.
pub(crate) const NOT_STARTED: &str = "ERR Can't execute an AOF background rewriting. Please \
check the server logs for more information.";

/// Who starts a rewrite, which decides on which thread its split (step 2) is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A command outside a transaction (BGREWRITEAOF, CONFIG SET appendonly yes), holding the
    /// command gate shared: steps 1 and 2 run on its thread before it replies, as Redis forks
    /// before it replies (tests find the child as soon as the reply comes), unless a save holds
    /// the cut.
    Command,
    /// A command inside EXEC: the cut must not split its transaction, so the rewrite thread
    /// takes it once the transaction is over, as Redis schedules a rewrite asked for in EXEC.
    Transaction,
    /// The timer (an automatic or a scheduled rewrite), a replica after its sync: the rewrite
    /// thread does every step, taking the gate itself.
    Background,
}

impl Caller {
    /// The caller a command is, from whether it runs inside EXEC.
    pub(crate) fn command(in_exec: bool) -> Caller {
        if in_exec {
            Caller::Transaction
        } else {
            Caller::Command
        }
    }
}

/// How a rewrite that was asked for began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Started {
    /// Its split is taken (Redis: the child is forked).
    Now,
    /// It waits for a running save, or for the transaction that asked for it (Redis's
    /// `aof_rewrite_scheduled`).
    Scheduled,
}

/// What the rewrite thread is handed.
enum Job {
    /// Every step (the caller took none).
    Whole,
    /// Step 1 done; the split waits for a save that started meanwhile.
    Opened(Rewrite),
    /// Steps 1 and 2 done.
    Split(Rewrite, BaseSource, u64),
}

/// Starts a rewrite: steps 1 and 2 on this thread for [`Caller::Command`] (when no save holds
/// the cut), the rest on a `forkless-aofrw` thread. Err is the reply: one runs already, or it
/// could not start (then `aof_last_bgrewrite_status` is err, as Redis's).
pub(crate) fn start_background(server: &Server, caller: Caller) -> Result<Started, String> {
    {
        let mut state = server.aof.state();
        if state.rewrite_started.is_some() {
            return Err(ALREADY.into());
        }
        state.rewrite_started = Some(Instant::now());
        // Scheduled behind a running save from the start, as Redis's INFO shows it at once
        // (the rewrite thread keeps it current from here).
        state.rewrite_scheduled = caller == Caller::Transaction || server.keyspace.save_running();
    }
    // A cancellation asked of an earlier rewrite (a shutdown that then failed) is not this one's.
    server.aof.cancel_rewrite.store(false, Ordering::Relaxed);
    let Some(owner) = server.arc() else {
        server.aof.state().rewrite_started = None;
        return Err("ERR server is shutting down".into());
    };
    // The thread starts first and waits for its job, so a thread that cannot start leaves
    // nothing begun to undo.
    let (job_tx, job_rx) = std::sync::mpsc::channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("forkless-aofrw".into())
        .spawn(move || {
            let Ok(job) = job_rx.recv() else { return };
            let result = match job {
                Job::Whole => rewrite(&owner),
                Job::Opened(rewrite) => rewrite.split_and_complete(&owner),
                Job::Split(rewrite, source, cut_seq) => rewrite.complete(&owner, source, cut_seq),
            };
            ended(&owner, &result);
        });
    if let Err(err) = spawned {
        server.aof.state().rewrite_started = None;
        return Err(format!(
            "ERR Can't rewrite append only file in background: {err}"
        ));
    }
    let (job, started) = if caller == Caller::Command && !server.keyspace.save_running() {
        let begun = Rewrite::open_counted(server, true).and_then(|mut rewrite| {
            match rewrite.split(server, true) {
                Ok(Some((source, cut_seq))) => {
                    Ok((Job::Split(rewrite, source, cut_seq), Started::Now))
                }
                // A save took the cut since the check above.
                Ok(None) => Ok((Job::Opened(rewrite), Started::Scheduled)),
                Err(err) => {
                    rewrite.abandon(server);
                    Err(err)
                }
            }
        });
        match begun {
            Ok(begun) => begun,
            Err(err) => {
                // Dropping the sender ends the thread.
                drop(job_tx);
                not_started(server, &err);
                return Err(NOT_STARTED.into());
            }
        }
    } else {
        let started = if caller == Caller::Transaction || server.keyspace.save_running() {
            Started::Scheduled
        } else {
            Started::Now
        };
        (Job::Whole, started)
    };
    // The thread is alive and waiting for its job: the send cannot fail.
    let _ = job_tx.send(job);
    tracing::info!("Background append only file rewriting started");
    Ok(started)
}

/// A rewrite that could not start: no file, writer or child is left, and INFO shows the
/// failure (`aof_last_bgrewrite_status:err`), as Redis's `rewriteAppendOnlyFileBackground`
/// failing (not counted in `aof_rewrites_consecutive_failures`, as there).
fn not_started(server: &Server, err: &str) {
    tracing::warn!("{err}");
    let mut state = server.aof.state();
    state.rewrite_started = None;
    state.rewrite_scheduled = false;
    state.last_rewrite_ok = false;
}

/// What the rewrite thread does after a rewrite: a BGREWRITEAOF with the AOF off writes the
/// files and leaves it off, as Redis; then the outcome is recorded.
fn ended(server: &Server, result: &Result<(), String>) {
    if !server.config().appendonly {
        super::stop(server);
        server.aof.state().waiting_rewrite = false;
    }
    finish(server, result);
}

/// Before the final save: cancels a running rewrite (its base save stops at the next check)
/// and waits for it to end, as Redis kills its AOF child on shutdown. The manifest it leaves is
/// complete (step 1 of the module's doc).
pub(crate) fn cancel_and_wait(server: &Server) {
    server.aof.cancel_rewrite.store(true, Ordering::Relaxed);
    // Bounded: should the rewrite be stuck behind the gate this caller holds, the final save
    // goes on (and reports the save slot busy) rather than wait forever.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        {
            let state = server.aof.state();
            if state.rewrite_started.is_none() {
                server.aof.cancel_rewrite.store(false, Ordering::Relaxed);
                return;
            }
            if let Some(progress) = &state.rewrite_progress {
                progress.cancel.store(true, Ordering::Relaxed);
            }
            if let Some(pid) = state.rewrite_fork_pid {
                crate::fork_mode::kill_child(pid, crate::fork_mode::SIGNAL_CANCEL);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `CONFIG SET appendonly no` during a rewrite: Redis's `stopAppendOnly` kills the rewrite's
/// child (`killAppendOnlyChild`) and keeps nothing of it. The rewrite is cancelled (a fork
/// mode child killed) and waited for, a base it wrote is removed before the manifest names it,
/// and its end is neither a success nor a failure in INFO (Redis waits for the killed child
/// itself, so its done handler never runs). The manifest of its step 1 stays, as Redis's does.
pub(crate) fn discard(server: &Server) {
    {
        let mut state = server.aof.state();
        if state.rewrite_started.is_none() {
            return;
        }
        state.rewrite_discarded = true;
    }
    tracing::info!("Killing running AOF rewrite");
    cancel_and_wait(server);
}

/// Records a rewrite's outcome, as Redis's `backgroundRewriteDoneHandler`: a failure counts in
/// `aof_rewrites_consecutive_failures`, and while the AOF is being switched on the rewrite is
/// scheduled again (started by the timer, unless the limit holds it: `RewriteLimit`).
pub(crate) fn finish(server: &Server, result: &Result<(), String>) {
    let mut state = server.aof.state();
    let took = state.rewrite_started.take().map_or(0, |at| {
        i64::try_from(at.elapsed().as_secs()).unwrap_or(i64::MAX)
    });
    state.last_rewrite_time_sec = took;
    state.rewrite_scheduled = false;
    let discarded = std::mem::take(&mut state.rewrite_discarded);
    match result {
        Err(err) if discarded => {
            tracing::info!("Background AOF rewrite discarded, the AOF was switched off: {err}");
        }
        Ok(()) => {
            state.last_rewrite_ok = true;
            state.consecutive_failures = 0;
            tracing::info!("Background AOF rewrite finished successfully");
        }
        Err(err) => {
            state.last_rewrite_ok = false;
            state.consecutive_failures += 1;
            tracing::warn!("Background AOF rewrite failed: {err}");
            if state.current.is_none() && state.waiting_rewrite {
                // Redis's AOF_WAIT_REWRITE: the AOF goes on waiting for a base.
                state.rewrite_scheduled = true;
            }
        }
    }
    let bgsave = std::mem::take(&mut state.bgsave_scheduled);
    drop(state);
    if bgsave {
        // The command gate, as the save-point timer holds it, so the cut splits no transaction.
        let _gate = server.keyspace.gate().shared();
        if let Err(err) = crate::persistence::bgsave(server, None) {
            tracing::warn!("The scheduled BGSAVE could not start: {err}");
        }
    }
}

fn open_append(path: &std::path::Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Runs the whole rewrite (steps 1-5 of the module's doc) on the calling thread, which holds
/// no gate. With `snapshot-mode fork` the base is written by a forked child.
fn rewrite(server: &Server) -> Result<(), String> {
    wait_for_saves(server)?;
    Rewrite::open_counted(server, true)?.split_and_complete(server)
}

/// The first base of an AOF switched on at startup over an empty directory (Redis's
/// "Creating AOF base file ... on server start"): [`rewrite`]'s steps on this thread, not
/// counted in `aof_rewrites` (Redis writes it without a rewrite), and written in-process in
/// either snapshot mode, as Redis's `aofOpenIfNeededOnServerStart` writes it.
pub(crate) fn first_base(server: &Server) -> Result<(), String> {
    wait_for_saves(server)?;
    Rewrite::open(server, false)?.split_and_complete(server)
}

/// While a save holds the keyspace's one cut the rewrite is scheduled (INFO's
/// aof_rewrite_scheduled): its writer is attached only once the cut can be taken, so it does
/// not keep every effect of a long save in memory.
fn wait_for_saves(server: &Server) -> Result<(), String> {
    while server.keyspace.save_running() {
        if server.shutting_down.load(Ordering::Relaxed)
            || server.aof.cancel_rewrite.load(Ordering::Relaxed)
        {
            return Err("the server is shutting down".into());
        }
        server.aof.state().rewrite_scheduled = true;
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// A rewrite between its steps: the files it names and, from step 1 on, its writer.
struct Rewrite {
    config: Config,
    names: Names,
    /// No writer was attached when it began: the AOF is being switched on, or is off.
    first: bool,
    old_manifest: Manifest,
    base_seq: u64,
    incr_seq: u64,
    incr_name: String,
    /// The file the new writer appends to: `incr_name`, or the temp incr when `first`.
    incr_path: PathBuf,
    file: Option<File>,
    writer: Arc<Writer>,
    consumer: ConsumerId,
    options: SaveOptions,
    preamble: bool,
    base_name: String,
    rdb_name: String,
    fork_mode: bool,
}

impl Rewrite {
    /// Step 1 of a background rewrite (BGREWRITEAOF, CONFIG SET appendonly yes, the timer):
    /// [`Rewrite::open`], then counted in `aof_rewrites`, as Redis's
    /// `rewriteAppendOnlyFileBackground` counts a rewrite once its new incr file is open,
    /// before the fork and whatever follows.
    fn open_counted(server: &Server, may_fork: bool) -> Result<Rewrite, String> {
        let rewrite = Rewrite::open(server, may_fork)?;
        server.aof.state().rewrites += 1;
        Ok(rewrite)
    }

    /// Step 1: the names, the new incr file (and the manifest listing it), the new writer.
    fn open(server: &Server, may_fork: bool) -> Result<Rewrite, String> {
        let config = server.config().clone();
        let names = Names::of(&config);
        std::fs::create_dir_all(&names.dir).map_err(|err| {
            format!(
                "Can't open or create append-only dir {}: {err}",
                names.dir.display()
            )
        })?;
        let first = server.aof.state().current.is_none();
        let mut old_manifest = server.aof.state().manifest.clone();
        if first {
            // Switched on at runtime over a directory of an earlier run: its files become
            // history and the sequence numbers go on from them, as Redis does.
            if let Ok(text) = std::fs::read(names.dir.join(names.manifest())) {
                if let Ok(on_disk) = Manifest::parse(&text) {
                    old_manifest = on_disk;
                }
            }
        }
        let base_seq = old_manifest.base.as_ref().map_or(0, |b| b.seq) + 1;
        let incr_seq = old_manifest.incrs.last().map_or(0, |i| i.seq) + 1;
        let incr_name = names.incr(incr_seq);
        let file_name = if first {
            names.temp_incr()
        } else {
            incr_name.clone()
        };
        let incr_path = names.dir.join(&file_name);
        let file = File::create(&incr_path)
            .and_then(|_| open_append(&incr_path))
            .map_err(|err| format!("Can't open the append-only file {file_name}: {err}"))?;
        if !first {
            // Listed before anything is written to it, and before the old writer stops: the
            // old incrs come first, so a crash from here on replays both in order.
            let mut listed = old_manifest.clone();
            listed.incrs.push(Entry {
                name: incr_name.clone(),
                seq: incr_seq,
                kind: FileType::Incr,
            });
            if let Err(err) = listed.persist(&names.dir, &names.manifest()) {
                drop(file);
                let _ = std::fs::remove_file(&incr_path);
                return Err(format!("Can't persist the AOF manifest: {err}"));
            }
            server.aof.state().manifest = listed;
        }
        tracing::info!("Creating AOF incr file {file_name} on background rewrite");
        let writer = Arc::new(Writer::new(
            config.appendfsync,
            0,
            0,
            server.aof.shared.clone(),
        ));
        writer
            .timestamps
            .store(config.aof_timestamp_enabled(), Ordering::Relaxed);
        server.aof.on.store(true, Ordering::Relaxed);
        let consumer = server.effects.attach(
            &server.keyspace,
            Arc::clone(&writer) as Arc<dyn crate::effects::EffectConsumer>,
        );
        let preamble = config.aof_use_rdb_preamble();
        let base_name = names.base(base_seq, preamble);
        // Without the preamble the cut is saved as an RDB first, then turned into commands.
        let rdb_name = if preamble {
            base_name.clone()
        } else {
            format!("temp-rewriteaof-rdb-{}.rdb", std::process::id())
        };
        let mut options = crate::persistence::save_options(server, &config);
        options.target = forkless_snapshot::backend::Target::new(
            names.dir.clone(),
            rdb_name.clone(),
            format!("temp-rewriteaof-bg-{}.aof", std::process::id()),
        );
        // Redis must be able to load the base.
        options.compression = Compression::None;
        options.fsync_every =
            crate::persistence::incremental_fsync(&config, "aof-rewrite-incremental-fsync");
        if first {
            options.priority = TraversalPriority::Nice(0);
        }
        let fork_mode = may_fork && config.snapshot_mode == crate::config::SnapshotMode::Fork;
        Ok(Rewrite {
            config,
            names,
            first,
            old_manifest,
            base_seq,
            incr_seq,
            incr_name,
            incr_path,
            file: Some(file),
            writer,
            consumer,
            options,
            preamble,
            base_name,
            rdb_name,
            fork_mode,
        })
    }

    /// The temp incr's name while the AOF is switched on: Redis's log line (which its tests
    /// count) when it is removed after a failure.
    fn remove_temp_incr(&self) {
        if self.config.appendonly {
            tracing::info!(
                "Removing the temp incr aof file {} in the background",
                self.names.temp_incr()
            );
        }
        let _ = std::fs::remove_file(&self.incr_path);
    }

    /// Undoes step 1 before a split: the new writer detaches. A listed incr file stays (empty,
    /// it replays as nothing, and the manifest lists it after the old incrs the old writer goes
    /// on with); the temp incr is removed.
    fn abandon(self, server: &Server) {
        server.effects.detach(&server.keyspace, self.consumer);
        self.writer.stop();
        if self.first {
            server.aof.on.store(false, Ordering::Relaxed);
            self.remove_temp_incr();
        }
    }

    /// Step 2, tried once: Some once the cut is taken (or the child forked), None while a save
    /// holds the cut. `gate_held`: the caller holds the command gate (a command); otherwise it
    /// is taken here, as the cut must not fall inside a transaction.
    fn split(
        &mut self,
        server: &Server,
        gate_held: bool,
    ) -> Result<Option<(BaseSource, u64)>, String> {
        if server.shutting_down.load(Ordering::Relaxed)
            || server.aof.cancel_rewrite.load(Ordering::Relaxed)
        {
            return Err("the server is shutting down".into());
        }
        let gate = (!gate_held).then(|| server.keyspace.gate().shared());
        if self.fork_mode {
            // The save slot is held for as long as the child runs, as a fork-mode BGSAVE holds
            // it: no other save, and no other child, meanwhile.
            let Some(claim) = server.keyspace.claim_save(Arc::new(())) else {
                return Ok(None);
            };
            let forked = Overrides::from_env()
                .map_err(fork::ForkError::Backend)
                .and_then(|overrides| {
                    crate::fork_mode::freeze_and_fork(
                        server,
                        unix_ms(),
                        &self.options,
                        &overrides,
                        None,
                    )
                });
            drop(gate);
            match forked {
                Ok((forked, _, seq)) => {
                    server.aof.state().rewrite_scheduled = false;
                    let mut persistence = server.persistence.state();
                    persistence.total_forks += 1;
                    persistence.latest_fork_usec = forked.fork_usec;
                    persistence.current_cow_bytes = 0;
                    persistence.current_cow_peak = 0;
                    persistence.current_cow_updated = None;
                    drop(persistence);
                    tracing::info!(
                        "Background append only file rewriting started by pid {}",
                        forked.pid
                    );
                    Ok(Some((BaseSource::Forked(forked, claim), seq.get())))
                }
                Err(err) => {
                    drop(claim);
                    Err(format!(
                        "Can't rewrite append only file in background: fork: {}",
                        err.strerror()
                    ))
                }
            }
        } else {
            let taken = server.keyspace.begin_snapshot(unix_ms());
            drop(gate);
            Ok(taken.map(|cut| {
                server.aof.state().rewrite_scheduled = false;
                let seq = cut.seq().get();
                (BaseSource::Cut(cut), seq)
            }))
        }
    }

    /// Step 2 on the rewrite thread: tried until the save that holds the cut ends (the new
    /// writer keeps the effects meanwhile), then the rest.
    fn split_and_complete(mut self, server: &Server) -> Result<(), String> {
        loop {
            match self.split(server, false) {
                Ok(Some((source, cut_seq))) => return self.complete(server, source, cut_seq),
                Ok(None) => {
                    server.aof.state().rewrite_scheduled = true;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(err) => {
                    self.abandon(server);
                    return Err(err);
                }
            }
        }
    }

    /// A failure from step 3 on: while the AOF is switched on it stays off until a rewrite
    /// succeeds (its writer detached, the temp incr removed); otherwise the manifest of step 1
    /// stays, complete, and the new incr goes on.
    fn failed(&self, server: &Server, err: String) -> String {
        if self.first {
            super::stop(server);
            self.remove_temp_incr();
        }
        err
    }

    /// Steps 3 to 5, on the rewrite thread.
    fn complete(
        mut self,
        server: &Server,
        base_source: BaseSource,
        cut_seq: u64,
    ) -> Result<(), String> {
        let writer = Arc::clone(&self.writer);
        // Step 3.
        writer.set_start(cut_seq);
        let previous = {
            let mut state = server.aof.state();
            server.aof.writers_changed();
            let previous = state.current.take();
            if let Some(previous) = &previous {
                previous.writer.set_end(cut_seq);
                state.previous = Some(Arc::clone(&previous.writer));
            }
            // Switching the AOF on (not a BGREWRITEAOF with it off): Redis's AOF_WAIT_REWRITE.
            state.waiting_rewrite = self.first && self.config.appendonly;
            state.current = Some(Active {
                writer: Arc::clone(&writer),
                consumer: self.consumer,
                thread: None,
            });
            previous
        };
        if let Some(mut previous) = previous {
            // Every number below the cut was taken before it, so the old writer gets them all
            // soon: the commands that took them publish right after they ran.
            while !previous.writer.reached_end() {
                std::thread::sleep(Duration::from_micros(200));
            }
            previous.writer.stop();
            if let Some(thread) = previous.thread.take() {
                let _ = thread.join();
            }
            server.effects.detach(&server.keyspace, previous.consumer);
            {
                let mut state = server.aof.state();
                server.aof.writers_changed();
                state.previous = None;
            }
            // Redis's aof_current_size goes on growing until a rewrite succeeds.
            writer.base_size.store(
                previous.writer.base_size.load(Ordering::Relaxed)
                    + previous.writer.incr_size.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
        }
        // Step 4.
        let Some(file) = self.file.take() else {
            return Err(self.failed(server, "the incr file was taken".into()));
        };
        let thread = match writer.spawn(file) {
            Ok(thread) => thread,
            Err(err) => {
                return Err(self.failed(server, format!("Can't start the AOF thread: {err}")));
            }
        };
        if let Some(active) = server.aof.state().current.as_mut() {
            active.thread = Some(thread);
        }
        writer
            .no_fsync
            .store(self.config.no_appendfsync_on_rewrite(), Ordering::Relaxed);
        let progress = Arc::new(Progress::default());
        server.aof.state().rewrite_progress = Some(Arc::clone(&progress));
        let report = match base_source {
            BaseSource::Cut(cut) => save::save(&server.keyspace, cut, &self.options, &progress)
                .map(|report| report.bytes_written)
                .map_err(|err| err.to_string()),
            BaseSource::Forked(forked, claim) => {
                let result = forked_base(server, forked, &progress, &self.names.dir);
                drop(claim);
                result
            }
        };
        server.aof.state().rewrite_progress = None;
        writer.no_fsync.store(false, Ordering::Relaxed);
        let base_name = self.base_name.clone();
        let base_bytes = match report {
            Ok(bytes) if self.preamble => bytes,
            Ok(_) => {
                let rdb_path = self.names.dir.join(&self.rdb_name);
                let converted = rdb_to_commands(
                    &rdb_path,
                    &self.names.dir,
                    &base_name,
                    self.options.fsync_every,
                    self.config.aof_timestamp_enabled(),
                );
                let _ = std::fs::remove_file(&rdb_path);
                converted.map_err(|err| {
                    self.failed(
                        server,
                        format!("Error writing the AOF base {base_name}: {err}"),
                    )
                })?
            }
            Err(err) => {
                return Err(self.failed(
                    server,
                    format!("Error writing the AOF base {base_name}: {err}"),
                ));
            }
        };
        // Cancelled (shutdown, `CONFIG SET appendonly no`) once the base was written: the
        // manifest keeps the old base, as Redis's killed child never reports its file.
        if server.aof.cancel_rewrite.load(Ordering::Relaxed) {
            let _ = std::fs::remove_file(self.names.dir.join(&base_name));
            return Err(self.failed(server, "the rewrite was cancelled".into()));
        }
        // Step 5.
        // The old files become history as Redis's `backgroundRewriteDoneHandler` lists them:
        // the old incrs, then the old base, ahead of the history already there. A BGREWRITEAOF
        // with the AOF off leaves the base alone, as Redis opens no incr then: the temp incr
        // this rewrite logged to meanwhile is removed.
        let aof_off = self.first && !self.config.appendonly;
        let new_incr = Entry {
            name: self.incr_name.clone(),
            seq: self.incr_seq,
            kind: FileType::Incr,
        };
        let incrs = if aof_off { Vec::new() } else { vec![new_incr] };
        let history = self
            .old_manifest
            .incrs
            .iter()
            .chain(&self.old_manifest.base)
            .map(|old| Entry {
                kind: FileType::History,
                ..old.clone()
            })
            .chain(self.old_manifest.history.iter().cloned())
            .collect();
        let next = Manifest {
            base: Some(Entry {
                name: base_name.clone(),
                seq: self.base_seq,
                kind: FileType::Base,
            }),
            history,
            incrs,
        };
        let base_path = self.names.dir.join(&base_name);
        if self.first && !aof_off {
            // Redis's AOF_WAIT_REWRITE: the temp incr takes its name (the writer's descriptor
            // goes on with it) before the manifest lists it.
            let incr_path = self.names.dir.join(&self.incr_name);
            if let Err(err) = std::fs::rename(&self.incr_path, &incr_path) {
                let _ = std::fs::remove_file(&base_path);
                return Err(self.failed(
                    server,
                    format!(
                        "Error trying to rename the temporary AOF incr file {} into {}: {err}",
                        self.names.temp_incr(),
                        self.incr_name
                    ),
                ));
            }
            tracing::info!(
                "Successfully renamed the temporary AOF incr file {} into {}",
                self.names.temp_incr(),
                self.incr_name
            );
            self.incr_path = incr_path;
        }
        if let Err(err) = next.persist(&self.names.dir, &self.names.manifest()) {
            let _ = std::fs::remove_file(&base_path);
            return Err(self.failed(server, format!("Can't persist the AOF manifest: {err}")));
        }
        if aof_off {
            let _ = std::fs::remove_file(&self.incr_path);
        }
        {
            let mut state = server.aof.state();
            state.manifest = next.clone();
            state.waiting_rewrite = false;
            state.base_size_at_rewrite = base_bytes + writer.incr_size.load(Ordering::Relaxed);
        }
        writer.base_size.store(base_bytes, Ordering::Relaxed);
        delete_history(server, &self.names, next);
        if self.first && !aof_off {
            tracing::info!("AOF rewrite: the AOF is on");
        }
        Ok(())
    }
}

/// Where the new base comes from: the epoch cut, or (`snapshot-mode fork`) a child forked from
/// the frozen keyspace, with the save slot it holds while it runs.
enum BaseSource {
    Cut(forkless_storage::SnapshotCut),
    Forked(ForkedSave, forkless_storage::SaveClaim),
}

/// Follows the child that writes the base (`snapshot-mode fork`) to its end and reaps it, as
/// Redis's `backgroundRewriteDoneHandler` learns its AOF child's fate. Keeps INFO's
/// copy-on-write figures current meanwhile and leaves the peak in `aof_last_cow_size`.
/// Returns the base's size, or why the child failed (its temp file removed).
fn forked_base(
    server: &Server,
    forked: ForkedSave,
    progress: &Progress,
    dir: &std::path::Path,
) -> Result<u64, String> {
    let ForkedSave { pid, reports, .. } = forked;
    server.aof.state().rewrite_fork_pid = Some(pid);
    // A shutdown that asked to cancel before the child's pid was known.
    if server.aof.cancel_rewrite.load(Ordering::Relaxed) {
        crate::fork_mode::kill_child(pid, crate::fork_mode::SIGNAL_CANCEL);
    }
    let last = crate::fork_mode::follow_reports(server, reports, progress);
    let exit = fork::wait_child(pid);
    server.aof.state().rewrite_fork_pid = None;
    let peak = {
        let mut persistence = server.persistence.state();
        let peak = persistence.current_cow_peak;
        persistence.current_cow_bytes = 0;
        persistence.current_cow_peak = 0;
        persistence.current_cow_updated = None;
        peak
    };
    if last.is_some() {
        server.aof.state().last_cow_bytes = peak;
        tracing::info!("Fork CoW for AOF rewrite: peak {} MB", peak >> 20);
    }
    let outcome = match (last, exit) {
        (Some(ChildReport::Done { bytes_written, .. }), Ok(fork::ChildExit::Exited(0))) => {
            return Ok(bytes_written);
        }
        (_, Ok(fork::ChildExit::Signaled(signal))) => {
            format!("child {pid} terminated by signal {signal}")
        }
        (Some(ChildReport::Failed { message, .. }), _) => message,
        (_, Ok(fork::ChildExit::Exited(code))) => format!("child exited with status {code}"),
        (_, Err(err)) => format!("waitpid({pid}): {err}"),
    };
    crate::fork_mode::remove_child_temp(&dir.join(fork::child_temp_name(pid)));
    Err(outcome)
}

/// Deletes the history files and persists the manifest without them, as Redis's
/// `aofDelHistoryFiles`.
/// Nothing is deleted while `aof-disable-auto-gc` is yes.
pub(crate) fn delete_history(server: &Server, names: &Names, mut manifest: Manifest) {
    if manifest.history.is_empty() || server.config().aof_disable_auto_gc() {
        return;
    }
    for old in manifest.history.drain(..) {
        let path = names.dir.join(&old.name);
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!("Removing the history file {} in the background", old.name),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => tracing::warn!("Can't remove the history file {}: {err}", path.display()),
        }
    }
    match manifest.persist(&names.dir, &names.manifest()) {
        Ok(()) => server.aof.state().manifest = manifest,
        Err(err) => tracing::warn!("Can't persist the AOF manifest: {err}"),
    }
}

/// Redis's `AOF_REWRITE_ITEMS_PER_CMD`: elements per command when a collection is rewritten.
const ITEMS_PER_COMMAND: usize = 64;

/// The base in commands (`aof-use-rdb-preamble no`): the RDB saved from the cut, read back and
/// written as Redis's `rewriteAppendOnlyFileRio` writes a dataset (SELECT per database, SET,
/// RPUSH/HMSET/SADD/ZADD in batches of 64, PEXPIREAT), to `dir/name` through a temp file,
/// fsynced every `fsync_every` bytes (when not 0) and before the rename; with `timestamp`
/// (`aof-timestamp-enabled`) it starts with a `#TS:` annotation, as Redis's. Returns its size.
fn rdb_to_commands(
    rdb: &std::path::Path,
    dir: &std::path::Path,
    name: &str,
    fsync_every: u64,
    timestamp: bool,
) -> Result<u64, String> {
    use std::io::Write as _;

    use bytes::Bytes;
    use forkless_storage::Value;

    let encode = super::writer::encode;
    let temp = dir.join(format!("temp-rewriteaof-cmd-{}.aof", std::process::id()));
    let input = File::open(rdb).map_err(|err| format!("{}: {err}", rdb.display()))?;
    let output = File::create(&temp).map_err(|err| format!("{}: {err}", temp.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, output);
    if timestamp {
        let annotation = format!("#TS:{}\r\n", unix_ms() / 1000);
        if let Err(err) = out.write_all(annotation.as_bytes()) {
            drop(out);
            let _ = std::fs::remove_file(&temp);
            return Err(format!("{}: {err}", temp.display()));
        }
    }
    let mut buf = Vec::new();
    let mut selected = None;
    let (mut written, mut synced_at) = (0u64, 0u64);
    let result = forkless_snapshot::format::load(
        std::io::BufReader::with_capacity(1 << 20, input),
        &rdb.display().to_string(),
        0,
        |entry| {
            buf.clear();
            let key = entry.key;
            if selected != Some(entry.db) {
                selected = Some(entry.db);
                encode(
                    &mut buf,
                    &[
                        Bytes::from_static(b"SELECT"),
                        Bytes::from(entry.db.to_string()),
                    ],
                );
            }
            let mut batched = |command: &'static [u8], items: Vec<Bytes>, per_item: usize| {
                for chunk in items.chunks(ITEMS_PER_COMMAND * per_item) {
                    let mut argv = vec![Bytes::from_static(command), key.clone()];
                    argv.extend_from_slice(chunk);
                    encode(&mut buf, &argv);
                }
            };
            match &entry.value {
                Value::String(value) => batched(b"SET", vec![Bytes::copy_from_slice(value)], 1),
                Value::List(list) => batched(
                    b"RPUSH",
                    list.iter().map(|item| Bytes::from(item.to_vec())).collect(),
                    1,
                ),
                Value::Hash(hash) => batched(
                    b"HMSET",
                    hash.iter()
                        .flat_map(|(field, value)| {
                            [Bytes::from(field.to_vec()), Bytes::from(value.to_vec())]
                        })
                        .collect(),
                    2,
                ),
                Value::Set(set) => batched(
                    b"SADD",
                    set.iter()
                        .map(|member| Bytes::from(member.to_vec()))
                        .collect(),
                    1,
                ),
                Value::ZSet(zset) => batched(
                    b"ZADD",
                    zset.iter()
                        .flat_map(|(member, score)| {
                            [Bytes::from(score.to_string()), Bytes::from(member.to_vec())]
                        })
                        .collect(),
                    2,
                ),
                Value::Stream(stream) => stream_commands(&mut buf, &key, stream),
            }
            if let Some(at) = entry.expire_at_ms {
                encode(
                    &mut buf,
                    &[
                        Bytes::from_static(b"PEXPIREAT"),
                        key.clone(),
                        Bytes::from(at.to_string()),
                    ],
                );
            }
            let rejected = |err: std::io::Error| {
                forkless_snapshot::format::LoadError::rejected(err.to_string())
            };
            out.write_all(&buf).map_err(rejected)?;
            written += buf.len() as u64;
            if fsync_every > 0 && written - synced_at >= fsync_every {
                // `aof-rewrite-incremental-fsync`, as Redis's rio autosync.
                synced_at = written;
                out.flush().map_err(rejected)?;
                out.get_ref().sync_data().map_err(rejected)?;
            }
            Ok(())
        },
    );
    let written = result.map_err(|err| err.to_string()).and_then(|_| {
        let file = out.into_inner().map_err(|err| err.to_string())?;
        file.sync_all().map_err(|err| err.to_string())?;
        let size = file.metadata().map_err(|err| err.to_string())?.len();
        std::fs::rename(&temp, dir.join(name)).map_err(|err| err.to_string())?;
        Ok(size)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// A stream as the commands that rebuild it, as Redis's `rewriteStreamObject` writes them:
/// XADD per entry (or an XADD trimmed to nothing for an empty stream, which still exists),
/// XSETID with the stream's counters, then per group XGROUP CREATE with its entries-read,
/// XCLAIM ... JUSTID FORCE for each pending entry (its owner, delivery time and count) and
/// XGROUP CREATECONSUMER for consumers that own nothing.
fn stream_commands(
    buf: &mut Vec<u8>,
    key: &bytes::Bytes,
    stream: &forkless_storage::types::stream::Stream,
) {
    use bytes::Bytes;

    let encode = super::writer::encode;
    let text = |value: &dyn std::fmt::Display| Bytes::from(value.to_string());
    let last_id = stream.last_id();
    if stream.is_empty() {
        encode(
            buf,
            &[
                Bytes::from_static(b"XADD"),
                key.clone(),
                Bytes::from_static(b"MAXLEN"),
                Bytes::from_static(b"0"),
                text(&last_id),
                Bytes::from_static(b"x"),
                Bytes::from_static(b"y"),
            ],
        );
    }
    for (id, fields) in stream.iter() {
        let mut argv = vec![Bytes::from_static(b"XADD"), key.clone(), text(&id)];
        argv.extend(fields.map(Bytes::copy_from_slice));
        encode(buf, &argv);
    }
    encode(
        buf,
        &[
            Bytes::from_static(b"XSETID"),
            key.clone(),
            text(&last_id),
            Bytes::from_static(b"ENTRIESADDED"),
            text(&stream.entries_added()),
            Bytes::from_static(b"MAXDELETEDID"),
            text(&stream.max_deleted_id()),
        ],
    );
    for (name, group) in stream.groups() {
        let entries_read = group
            .entries_read
            .and_then(|n| i64::try_from(n).ok())
            .unwrap_or(-1);
        encode(
            buf,
            &[
                Bytes::from_static(b"XGROUP"),
                Bytes::from_static(b"CREATE"),
                key.clone(),
                name.clone(),
                text(&group.last_id),
                Bytes::from_static(b"ENTRIESREAD"),
                text(&entries_read),
            ],
        );
        for (id, pending) in &group.pending {
            encode(
                buf,
                &[
                    Bytes::from_static(b"XCLAIM"),
                    key.clone(),
                    name.clone(),
                    pending.consumer.clone(),
                    Bytes::from_static(b"0"),
                    text(id),
                    Bytes::from_static(b"TIME"),
                    text(&pending.delivery_time),
                    Bytes::from_static(b"RETRYCOUNT"),
                    text(&pending.delivery_count),
                    Bytes::from_static(b"JUSTID"),
                    Bytes::from_static(b"FORCE"),
                ],
            );
        }
        for (consumer, state) in &group.consumers {
            if state.pending.is_empty() {
                encode(
                    buf,
                    &[
                        Bytes::from_static(b"XGROUP"),
                        Bytes::from_static(b"CREATECONSUMER"),
                        key.clone(),
                        name.clone(),
                        consumer.clone(),
                    ],
                );
            }
        }
    }
}
