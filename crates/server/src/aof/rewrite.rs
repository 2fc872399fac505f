//! The AOF rewrite without fork: a new incr file opened at an epoch cut, the new base written
//! from the cut by the same save as BGSAVE, then the manifest switched over.
//!
//! 1. Create the next incr file; attach its writer (it keeps what it gets until step 3).
//! 2. Take the cut. Every effect numbered below `cut.seq()` is in the cut; every other after.
//! 3. The new writer logs from `cut.seq()`, the old one stops there; once the old one has every
//!    effect below the cut, it flushes, fsyncs and is detached, and the manifest (old base,
//!    old incrs, new incr) is persisted, so a crash from here on loses nothing.
//! 4. The new writer's thread starts; the base is saved from the cut.
//! 5. The manifest becomes the new base and the new incr; the old files become history and are
//!    deleted.
//!
//! A failed save leaves the manifest of step 3, which is complete: the new incr continues the
//! old ones exactly at the cut.

use std::fs::{File, OpenOptions};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use forkless_snapshot::backend::Overrides;
use forkless_snapshot::backend::fork::{self, ChildReport, ForkedSave};
use forkless_snapshot::save::{self, Compression, Progress, TraversalPriority};

use super::manifest::{Entry, FileType, Manifest};
use super::writer::Writer;
use super::{Active, Names};
use crate::server::{Server, unix_ms};

/// BGREWRITEAOF's reply when one runs already, as Redis.
pub(crate) const ALREADY: &str = "ERR Background append only file rewriting already in progress";

/// Starts a rewrite on a `forkless-aofrw` thread. Err is the reason it could not start.
pub(crate) fn start_background(server: &Server) -> Result<(), String> {
    {
        let mut state = server.aof.state();
        if state.rewrite_started.is_some() {
            return Err(ALREADY.into());
        }
        state.rewrite_started = Some(Instant::now());
        // Scheduled behind a running save from the start, as Redis's INFO shows it at once
        // (the rewrite thread keeps it current from here).
        state.rewrite_scheduled = server.keyspace.save_running();
    }
    // A cancellation asked of an earlier rewrite (a shutdown that then failed) is not this one's.
    server.aof.cancel_rewrite.store(false, Ordering::Relaxed);
    let Some(owner) = server.arc() else {
        server.aof.state().rewrite_started = None;
        return Err("ERR server is shutting down".into());
    };
    let spawned = std::thread::Builder::new()
        .name("forkless-aofrw".into())
        .spawn(move || {
            let result = rewrite(&owner, true);
            // BGREWRITEAOF with the AOF off writes the files and leaves it off, as Redis.
            if !owner.config().appendonly {
                super::stop(&owner);
                owner.aof.state().waiting_rewrite = false;
            }
            finish(&owner, &result);
        });
    if let Err(err) = spawned {
        server.aof.state().rewrite_started = None;
        return Err(format!(
            "ERR Can't rewrite append only file in background: {err}"
        ));
    }
    tracing::info!("Background append only file rewriting started");
    Ok(())
}

/// Before the final save: cancels a running rewrite (its base save stops at the next check)
/// and waits for it to end, as Redis kills its AOF child on shutdown. The manifest it leaves is
/// complete (step 3 of the module's doc).
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

/// Records a rewrite's outcome.
pub(crate) fn finish(server: &Server, result: &Result<(), String>) {
    let mut state = server.aof.state();
    let took = state.rewrite_started.take().map_or(0, |at| {
        i64::try_from(at.elapsed().as_secs()).unwrap_or(i64::MAX)
    });
    state.last_rewrite_time_sec = took;
    match result {
        Ok(()) => {
            state.last_rewrite_ok = true;
            state.rewrites += 1;
            state.consecutive_failures = 0;
            tracing::info!("Background AOF rewrite finished successfully");
        }
        Err(err) => {
            state.last_rewrite_ok = false;
            state.consecutive_failures += 1;
            if state.current.is_none() {
                // The AOF was being switched on: it stays off.
                state.waiting_rewrite = false;
            }
            tracing::warn!("Background AOF rewrite failed: {err}");
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

/// Runs the rewrite (steps 1-5 of the module's doc) on the calling thread. With `may_fork`
/// and `snapshot-mode fork` the base is written by a forked child; the first base at startup
/// is written in-process, as Redis's `aofOpenIfNeededOnServerStart` does.
pub(crate) fn rewrite(server: &Server, may_fork: bool) -> Result<(), String> {
    let config = server.config().clone();
    let names = Names::of(&config);
    std::fs::create_dir_all(&names.dir).map_err(|err| {
        format!(
            "Can't create the AOF directory {}: {err}",
            names.dir.display()
        )
    })?;
    let first = server.aof.state().current.is_none();
    let mut old_manifest = server.aof.state().manifest.clone();
    if first {
        // Switched on at runtime over a directory of an earlier run: its files become history
        // and the sequence numbers go on from them, as Redis does.
        if let Ok(text) = std::fs::read(names.dir.join(names.manifest())) {
            if let Ok(on_disk) = Manifest::parse(&text) {
                old_manifest = on_disk;
            }
        }
    }
    let base_seq = old_manifest.base.as_ref().map_or(0, |b| b.seq) + 1;
    let incr_seq = old_manifest.incrs.last().map_or(0, |i| i.seq) + 1;
    let incr_name = names.incr(incr_seq);
    let incr_path = names.dir.join(&incr_name);
    // While a save holds the keyspace's one cut the rewrite is scheduled (INFO's
    // aof_rewrite_scheduled): its writer is attached only once the cut can be taken, so it does
    // not keep every effect of a long save in memory.
    while server.keyspace.save_running() {
        if server.shutting_down.load(Ordering::Relaxed)
            || server.aof.cancel_rewrite.load(Ordering::Relaxed)
        {
            return Err("the server is shutting down".into());
        }
        server.aof.state().rewrite_scheduled = true;
        std::thread::sleep(Duration::from_millis(10));
    }
    // Step 1.
    let file = File::create(&incr_path)
        .and_then(|_| open_append(&incr_path))
        .map_err(|err| {
            format!(
                "Can't open the append-only file {}: {err}",
                incr_path.display()
            )
        })?;
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
    // Step 2. A save that started since the wait above holds the cut: wait again (the new
    // writer keeps the effects meanwhile).
    let (base_source, cut_seq) = loop {
        // Checked before the gate is taken: the final save that cancels this rewrite may
        // hold the gate while it waits for it.
        if server.shutting_down.load(Ordering::Relaxed)
            || server.aof.cancel_rewrite.load(Ordering::Relaxed)
        {
            server.effects.detach(&server.keyspace, consumer);
            writer.stop();
            let _ = std::fs::remove_file(&incr_path);
            return Err("the server is shutting down".into());
        }
        // The cut must not fall inside a transaction: hold the gate as a command does.
        let gate = server.keyspace.gate().shared();
        if fork_mode {
            // The save slot is held for as long as the child runs, as a fork-mode BGSAVE holds
            // it: no other save, and no other child, meanwhile.
            if let Some(claim) = server.keyspace.claim_save(Arc::new(())) {
                let forked = Overrides::from_env()
                    .map_err(fork::ForkError::Backend)
                    .and_then(|overrides| {
                        crate::fork_mode::freeze_and_fork(
                            server,
                            unix_ms(),
                            &options,
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
                        break (BaseSource::Forked(forked, claim), seq.get());
                    }
                    Err(err) => {
                        drop(claim);
                        server.effects.detach(&server.keyspace, consumer);
                        writer.stop();
                        let _ = std::fs::remove_file(&incr_path);
                        return Err(format!(
                            "Can't rewrite append only file in background: fork: {}",
                            err.strerror()
                        ));
                    }
                }
            }
            drop(gate);
        } else {
            let taken = server.keyspace.begin_snapshot(unix_ms());
            drop(gate);
            if let Some(cut) = taken {
                server.aof.state().rewrite_scheduled = false;
                let seq = cut.seq().get();
                break (BaseSource::Cut(cut), seq);
            }
        }
        server.aof.state().rewrite_scheduled = true;
        std::thread::sleep(Duration::from_millis(10));
    };
    // Step 3.
    writer.set_start(cut_seq);
    let previous = {
        let mut state = server.aof.state();
        let previous = state.current.take();
        if let Some(previous) = &previous {
            previous.writer.set_end(cut_seq);
            state.previous = Some(Arc::clone(&previous.writer));
        }
        // Switching the AOF on (not a BGREWRITEAOF with it off): Redis's AOF_WAIT_REWRITE.
        state.waiting_rewrite = first && config.appendonly;
        state.current = Some(Active {
            writer: Arc::clone(&writer),
            consumer,
            thread: None,
        });
        previous
    };
    let mut manifest = old_manifest.clone();
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
        server.aof.state().previous = None;
        writer.base_size.store(
            previous.writer.base_size.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        manifest.incrs.push(Entry {
            name: incr_name.clone(),
            seq: incr_seq,
            kind: FileType::Incr,
        });
        manifest
            .persist(&names.dir, &names.manifest())
            .map_err(|err| format!("Can't persist the AOF manifest: {err}"))?;
        server.aof.state().manifest = manifest.clone();
    }
    // Step 4.
    let thread = writer
        .spawn(file)
        .map_err(|err| format!("Can't start the AOF thread: {err}"))?;
    if let Some(active) = server.aof.state().current.as_mut() {
        active.thread = Some(thread);
    }
    writer
        .no_fsync
        .store(config.no_appendfsync_on_rewrite(), Ordering::Relaxed);
    let progress = Arc::new(Progress::default());
    server.aof.state().rewrite_progress = Some(Arc::clone(&progress));
    let report = match base_source {
        BaseSource::Cut(cut) => save::save(&server.keyspace, cut, &options, &progress)
            .map(|report| report.bytes_written)
            .map_err(|err| err.to_string()),
        BaseSource::Forked(forked, claim) => {
            let result = forked_base(server, forked, &progress, &names.dir);
            drop(claim);
            result
        }
    };
    server.aof.state().rewrite_progress = None;
    writer.no_fsync.store(false, Ordering::Relaxed);
    let report = match report {
        Ok(bytes) => bytes,
        Err(err) => {
            if first {
                super::stop(server);
                server.aof.state().waiting_rewrite = false;
                let _ = std::fs::remove_file(&incr_path);
            }
            return Err(format!("Error writing the AOF base {base_name}: {err}"));
        }
    };
    let base_bytes = if preamble {
        report
    } else {
        let rdb_path = names.dir.join(&rdb_name);
        let converted = rdb_to_commands(
            &rdb_path,
            &names.dir,
            &base_name,
            options.fsync_every,
            config.aof_timestamp_enabled(),
        );
        let _ = std::fs::remove_file(&rdb_path);
        match converted {
            Ok(bytes) => bytes,
            Err(err) => {
                if first {
                    super::stop(server);
                    server.aof.state().waiting_rewrite = false;
                    let _ = std::fs::remove_file(&incr_path);
                }
                return Err(format!("Error writing the AOF base {base_name}: {err}"));
            }
        }
    };
    writer.base_size.store(base_bytes, Ordering::Relaxed);
    // Step 5.
    // The old files become history as Redis's `backgroundRewriteDoneHandler` lists them: the
    // old incrs, then the old base, ahead of the history already there. A BGREWRITEAOF with the
    // AOF off leaves the base alone, as Redis opens no incr then: the incr this rewrite logged
    // to meanwhile goes with the history.
    let aof_off = first && !config.appendonly;
    let new_incr = Entry {
        name: incr_name,
        seq: incr_seq,
        kind: FileType::Incr,
    };
    let (incrs, dropped) = if aof_off {
        (Vec::new(), Some(&new_incr))
    } else {
        (vec![new_incr.clone()], None)
    };
    let history = old_manifest
        .incrs
        .iter()
        .chain(&manifest.base)
        .chain(dropped)
        .map(|old| Entry {
            kind: FileType::History,
            ..old.clone()
        })
        .chain(manifest.history.iter().cloned())
        .collect();
    let next = Manifest {
        base: Some(Entry {
            name: base_name,
            seq: base_seq,
            kind: FileType::Base,
        }),
        history,
        incrs,
    };
    next.persist(&names.dir, &names.manifest())
        .map_err(|err| format!("Can't persist the AOF manifest: {err}"))?;
    {
        let mut state = server.aof.state();
        state.manifest = next.clone();
        state.waiting_rewrite = false;
        state.base_size_at_rewrite = base_bytes + writer.incr_size.load(Ordering::Relaxed);
    }
    delete_history(server, &names, next);
    if first {
        tracing::info!("AOF rewrite: the AOF is on");
    }
    Ok(())
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
