//! Fork-mode background saves: BGSAVE (and save points) with `snapshot-mode fork`, or
//! `BGSAVE FORK`.
//!
//! The thread that runs the command (holding the command gate shared, like every command, so
//! no transaction is half done) freezes the keyspace (`Keyspace::freeze_all`: every shard
//! read-locked, so no command is half-way through a change), forks, and unfreezes. The child
//! (`forkless_snapshot::backend::fork`) writes the dump and exits; a `forkless-reaper` thread
//! reads its reports, reaps it with `waitpid` and does the same bookkeeping as an epoch
//! BGSAVE (status, LASTSAVE, dirty counters, MISCONF, `rdb_saves`), plus Redis's fork
//! figures (`latest_fork_usec`, `total_forks`, copy-on-write sizes).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use forkless_snapshot::backend::Overrides;
use forkless_snapshot::backend::fork::{self, ChildExit, ChildReport, ForkedSave};
use forkless_snapshot::save::Progress;
use forkless_storage::SaveClaim;

use crate::persistence::{ALREADY_IN_PROGRESS, Running, SaveKind, save_options};
use crate::server::{Server, unix_ms};

/// The signal a shutdown sends to a running child, as Redis's `killRDBChild`: a save ended by
/// it is cancelled, not failed.
pub(crate) const SIGNAL_CANCEL: i32 = libc::SIGUSR1;

/// Redis 7.0's startup warning when `vm.overcommit_memory` is not 1 (its typo included).
pub(crate) const OVERCOMMIT_WARNING: &str = "WARNING Memory overcommit must be enabled! Without \
it, a background save or replication may fail under low memory condition. Being disabled, it can \
can also cause failures without low memory condition, see \
https://github.com/jemalloc/jemalloc/issues/1328. To fix this issue add \
'vm.overcommit_memory = 1' to /etc/sysctl.conf and then reboot or run the command 'sysctl \
vm.overcommit_memory=1' for this to take effect.";

/// Returns true if and only if `/proc/sys/vm/overcommit_memory` is readable and not 1, the
/// condition under which Redis prints [`OVERCOMMIT_WARNING`].
pub(crate) fn overcommit_disabled() -> bool {
    std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|value| value.trim() != "1")
}

/// Sends `signal` to a running save child; a failure (it already exited) is harmless: the
/// reaper is about to report it.
pub(crate) fn kill_child(pid: i32, signal: i32) {
    if let Err(err) = fork::signal_child(pid, signal) {
        tracing::debug!("kill({pid}, {signal}): {err}");
    }
}

/// What a replica's full sync in fork mode (`replication::primary`) asks of a forked save.
pub(crate) struct ForkHooks {
    /// Called with the frozen keyspace's effect number, just before the fork: the cut's
    /// place in the effect stream.
    pub(crate) frozen: Box<dyn FnOnce(forkless_storage::effect::Seq) + Send>,
    /// Called by the reaper with whether the save completed, while the save still holds the
    /// slot (so `dbfilename` is the file it wrote), before the outcome is recorded.
    pub(crate) saved: Box<dyn FnOnce(bool) + Send>,
}

/// A fork-mode BGSAVE. Err is the reply for the client.
pub(crate) fn bgsave_fork(server: &Server) -> Result<(), String> {
    bgsave_fork_with(server, None)
}

/// A fork-mode BGSAVE, with a replica sync's hooks. Err is the reply for the client.
pub(crate) fn bgsave_fork_with(server: &Server, hooks: Option<ForkHooks>) -> Result<(), String> {
    let (frozen_hook, saved_hook) = match hooks {
        Some(hooks) => (Some(hooks.frozen), Some(hooks.saved)),
        None => (None, None),
    };
    let Some(owner) = server.arc() else {
        return Err("ERR server is shutting down".into());
    };
    // Read before the state lock: the configuration comes first in the lock order
    // (docs/ARCHITECTURE.md).
    let options = save_options(server, &server.config());
    let mut state = server.persistence.state();
    // Every save is claimed with the state held, so the slot stays free until the claim below.
    if server.keyspace.save_running() {
        return Err(ALREADY_IN_PROGRESS.into());
    }
    let overrides = Overrides::from_env();
    // Like the epoch cut, read before the freeze: a change landing in between counts as unsaved
    // although it is saved, never the other way round. (Reading it under the freeze would take
    // shard read locks this thread already holds, which can deadlock behind a waiting writer.)
    let dirty_at_cut = server.keyspace.dirty();
    let now_ms = unix_ms();
    state.last_try_unix_ms = now_ms;
    let pause_started = Instant::now();
    let forked = overrides
        .map_err(fork::ForkError::Backend)
        .and_then(|overrides| freeze_and_fork(server, now_ms, &options, &overrides, frozen_hook));
    let pause_usec = u64::try_from(pause_started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let (
        ForkedSave {
            pid,
            fork_usec,
            reports,
        },
        keys_total,
        _,
    ) = match forked {
        Ok(forked) => forked,
        Err(err) => {
            // Redis's rdbSaveBackground: the status turns to err (and MISCONF follows), the
            // log names the OS error, the client gets a bare "-ERR".
            state.last_bgsave_ok = false;
            state.last_error = Some(format!("fork: {}", err.strerror()));
            server
                .persistence
                .last_save_failed
                .store(true, Ordering::Relaxed);
            tracing::warn!("Can't save in background: fork: {}", err.strerror());
            return Err("ERR".into());
        }
    };
    let temp_path = options.target.dir.join(fork::child_temp_name(pid));
    state.total_forks += 1;
    state.latest_fork_usec = fork_usec;
    server
        .keyspace
        .record_cut_pause(std::time::Duration::from_micros(pause_usec));
    state.current_cow_bytes = 0;
    state.current_cow_peak = 0;
    state.current_cow_updated = None;
    let progress = Arc::new(Progress::default());
    progress.keys_total.store(keys_total, Ordering::Relaxed);
    let record = Arc::new(Running {
        started: Instant::now(),
        progress: Arc::clone(&progress),
        dirty_at_cut,
        kind: SaveKind::Fork,
        fork_pid: Some(pid),
    });
    let Some(claim) = server.keyspace.claim_save(record) else {
        // Not reachable while every save is claimed under the state lock; never leave a child
        // unreaped if it were.
        kill_child(pid, libc::SIGKILL);
        let _ = fork::wait_child(pid);
        let _ = std::fs::remove_file(&temp_path);
        return Err(ALREADY_IN_PROGRESS.into());
    };
    drop(state);
    tracing::info!("Background saving started by pid {pid}");
    let (claim_tx, claim_rx) = std::sync::mpsc::channel::<SaveClaim>();
    let reaper = {
        let temp_path = temp_path.clone();
        std::thread::Builder::new()
            .name("forkless-reaper".into())
            .spawn(move || {
                let Ok(claim) = claim_rx.recv() else { return };
                reap(
                    &owner, pid, reports, &progress, &temp_path, claim, saved_hook,
                );
            })
    };
    match reaper {
        Ok(_) => {
            // The thread is alive and waiting for the claim: the send cannot fail.
            let _ = claim_tx.send(claim);
            Ok(())
        }
        Err(err) => {
            // Nobody would reap the child: stop it now and record the save as failed.
            tracing::warn!("Can't save in background: could not start the reaper thread: {err}");
            kill_child(pid, libc::SIGKILL);
            let exit = fork::wait_child(pid);
            let _ = std::fs::remove_file(&temp_path);
            finish(server, None, exit.ok(), claim);
            Err("ERR".into())
        }
    }
}

/// Freezes the keyspace (every shard read-locked), calls `frozen_hook` with the frozen
/// effect number, forks a child that saves per `options`, and unfreezes. Returns the child,
/// the keys it will save and the frozen effect number: every effect numbered below it is in
/// the child's copy, every other one is not. The caller holds the command gate shared, so no
/// transaction is half done. Shared by BGSAVE, a replica's sync and the AOF rewrite.
pub(crate) fn freeze_and_fork(
    server: &Server,
    now_ms: u64,
    options: &forkless_snapshot::save::SaveOptions,
    overrides: &Overrides,
    frozen_hook: Option<Box<dyn FnOnce(forkless_storage::effect::Seq) + Send>>,
) -> Result<(ForkedSave, u64, forkless_storage::effect::Seq), fork::ForkError> {
    let frozen = server.keyspace.freeze_all();
    let seq = frozen.seq();
    if let Some(hook) = frozen_hook {
        hook(seq);
    }
    let keys_total = frozen.total_keys();
    let forked = fork::spawn_save(&frozen, now_ms, options, overrides);
    // The child has its own copy; the parent's writers may go on at once.
    drop(frozen);
    forked.map(|forked| (forked, keys_total, seq))
}

/// Follows a child's reports until its end of the pipe closes, keeping the copy-on-write
/// figures of INFO persistence (`current_cow_size`, `current_cow_peak`) and `progress`
/// current. Returns its last report other than a progress one.
pub(crate) fn follow_reports(
    server: &Server,
    mut reports: std::fs::File,
    progress: &Progress,
) -> Option<ChildReport> {
    let mut last = None;
    while let Some(report) = ChildReport::read(&mut reports) {
        let mut state = server.persistence.state();
        let cow = match &report {
            ChildReport::Progress {
                keys_processed,
                cow_bytes,
            } => {
                progress
                    .keys_processed
                    .store(*keys_processed, Ordering::Relaxed);
                state.current_cow_bytes = *cow_bytes;
                state.current_cow_updated = Some(Instant::now());
                *cow_bytes
            }
            ChildReport::Done {
                keys_saved,
                cow_bytes,
                ..
            } => {
                progress
                    .keys_processed
                    .store(*keys_saved, Ordering::Relaxed);
                *cow_bytes
            }
            ChildReport::Failed { cow_bytes, .. } => *cow_bytes,
        };
        state.current_cow_peak = state.current_cow_peak.max(cow);
        drop(state);
        if !matches!(report, ChildReport::Progress { .. }) {
            last = Some(report);
        }
    }
    last
}

/// The reaper thread: follows the child's reports until its end of the pipe closes, reaps it,
/// removes its temp file unless it completed, and records the outcome.
fn reap(
    server: &Server,
    pid: i32,
    reports: std::fs::File,
    progress: &Progress,
    temp_path: &std::path::Path,
    claim: SaveClaim,
    saved_hook: Option<Box<dyn FnOnce(bool) + Send>>,
) {
    let last = follow_reports(server, reports, progress);
    let exit = match fork::wait_child(pid) {
        Ok(exit) => Some(exit),
        Err(err) => {
            tracing::warn!("waitpid({pid}): {err}");
            None
        }
    };
    let completed = matches!(
        (&last, exit),
        (Some(ChildReport::Done { .. }), Some(ChildExit::Exited(0)))
    );
    if let Some(hook) = saved_hook {
        hook(completed);
    }
    if !completed {
        remove_child_temp(temp_path);
    }
    finish(server, last, exit, claim);
}

/// Removes the temp file of a child that did not complete: the child removes it on the errors
/// it sees; a killed child cannot.
pub(crate) fn remove_child_temp(temp_path: &std::path::Path) {
    match std::fs::remove_file(temp_path) {
        Ok(()) => tracing::debug!(path = %temp_path.display(), "removed the child's temp file"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => tracing::warn!(
            path = %temp_path.display(),
            err_op = "unlink",
            "could not remove the child's temp file: {err}"
        ),
    }
}

/// Records a fork-mode save's outcome, as `persistence::finish` does for epoch saves, logs it
/// with Redis's wording, and releases the save's claim.
fn finish(server: &Server, last: Option<ChildReport>, exit: Option<ChildExit>, claim: SaveClaim) {
    let mut state = server.persistence.state();
    let running = crate::persistence::running(server);
    // Released with the state held, so no reader sees the save ended without its outcome.
    drop(claim);
    server.persistence.finished.notify_all();
    let Some(running) = running else {
        return;
    };
    state.last_bgsave_time_sec =
        i64::try_from(running.started.elapsed().as_secs()).unwrap_or(i64::MAX);
    state.last_bgsave_type = Some(SaveKind::Fork);
    let peak = state.current_cow_peak;
    state.current_cow_bytes = 0;
    state.current_cow_peak = 0;
    state.current_cow_updated = None;
    if matches!(
        last,
        Some(ChildReport::Done { .. } | ChildReport::Failed { .. })
    ) {
        // Redis's rdb_last_cow_size is the peak the child reported.
        state.last_cow_bytes = peak;
        tracing::info!(
            "Fork CoW for RDB: current {} MB, peak {} MB",
            cow_of(last.as_ref()) >> 20,
            peak >> 20
        );
    }
    let failed = |state: &mut crate::persistence::State, error: String| {
        crate::persistence::record_failure(server, state, error);
    };
    match (last, exit) {
        (
            Some(ChildReport::Done {
                keys_saved,
                bytes_written,
                ..
            }),
            Some(ChildExit::Exited(0)),
        ) => {
            crate::persistence::record_success(
                server,
                &mut state,
                running.dirty_at_cut,
                "fork",
                None,
                (bytes_written, keys_saved),
            );
            let secs = running.started.elapsed().as_secs_f64();
            tracing::info!(
                keys = keys_saved,
                bytes = bytes_written,
                writer = "fork",
                "Background saving terminated with success ({secs:.3} s)"
            );
        }
        (_, Some(ChildExit::Signaled(signal))) => {
            tracing::warn!("Background saving terminated by signal {signal}");
            // SIGUSR1 is how the server stops its own child (shutdown): not an error.
            if signal != SIGNAL_CANCEL {
                failed(
                    &mut state,
                    format!(
                        "child {} terminated by signal {signal}",
                        running_pid(&running)
                    ),
                );
            }
        }
        (Some(ChildReport::Failed { message, .. }), _) => {
            tracing::warn!("Background saving error: {message}");
            failed(&mut state, message);
        }
        (_, Some(ChildExit::Exited(code))) => {
            tracing::warn!("Background saving error: child exited with status {code}");
            failed(&mut state, format!("child exited with status {code}"));
        }
        (_, None) => {
            tracing::warn!("Background saving error: the child could not be reaped");
            failed(&mut state, "the child could not be reaped".into());
        }
    }
}

fn running_pid(running: &Running) -> i32 {
    running.fork_pid.unwrap_or(-1)
}

fn cow_of(report: Option<&ChildReport>) -> u64 {
    match report {
        Some(
            ChildReport::Progress { cow_bytes, .. }
            | ChildReport::Done { cow_bytes, .. }
            | ChildReport::Failed { cow_bytes, .. },
        ) => *cow_bytes,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overcommit_warning_is_redis_text() {
        assert!(OVERCOMMIT_WARNING.starts_with("WARNING Memory overcommit must be enabled!"));
        assert!(OVERCOMMIT_WARNING.contains("it can can also cause failures"));
        assert!(OVERCOMMIT_WARNING.ends_with("for this to take effect."));
        assert!(!OVERCOMMIT_WARNING.contains("  "));
    }
}
