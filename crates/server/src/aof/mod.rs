//! The append-only file, in Redis 7.0's multi-part layout: `dir/appenddirname/` holds a
//! manifest (`manifest.rs`), one base file (an RDB written from an epoch cut by the same save
//! as BGSAVE) and incremental files of commands that the effect stream's consumer appends to
//! (`writer.rs`). Loading replays them (`load.rs`); a rewrite takes a new cut and splits the
//! stream at it instead of forking (`rewrite.rs`).
//!
//! ```text
//!  EffectStream ──► Writer (render RESP, buffer) ──► forkless-aof thread: write, fsync
//!                                                        │ written (fsynced with `always`) seq
//!  conn: reply waits for its command's seq  ◄────────────┘
//! ```

pub(crate) mod load;
pub(crate) mod manifest;
pub(crate) mod rewrite;
pub(crate) mod waiters;
pub(crate) mod writer;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::Config;
use crate::effects::ConsumerId;
use crate::server::{Server, lock, unix_ms};

use self::manifest::Manifest;
use self::writer::Writer;

/// A writer attached to the effect stream, with its thread.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) writer: Arc<Writer>,
    pub(crate) consumer: ConsumerId,
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
}

/// The AOF's state: the writers and what INFO persistence shows of them. A std mutex, taken
/// by the rewrite at its steps, INFO, and a reply that waits for durability (briefly, to find
/// its writer).
#[derive(Debug)]
pub(crate) struct State {
    /// The writer of the current incr file, once the AOF is on.
    pub(crate) current: Option<Active>,
    /// During a rewrite, the writer of the previous incr file until it has every effect below
    /// the cut.
    pub(crate) previous: Option<Arc<Writer>>,
    pub(crate) manifest: Manifest,
    /// True while the AOF is being switched on (its first base is being written): Redis's
    /// `AOF_WAIT_REWRITE`.
    pub(crate) waiting_rewrite: bool,
    pub(crate) rewrite_started: Option<Instant>,
    pub(crate) rewrite_scheduled: bool,
    pub(crate) last_rewrite_time_sec: i64,
    pub(crate) last_rewrite_ok: bool,
    pub(crate) rewrites: u64,
    pub(crate) consecutive_failures: u64,
    /// The AOF's size after the last rewrite (or at startup): Redis's `aof_rewrite_base_size`,
    /// what `auto-aof-rewrite-percentage` measures growth against and INFO's `aof_base_size`.
    pub(crate) base_size_at_rewrite: u64,
    /// A `BGSAVE SCHEDULE` that waits for the running rewrite to end.
    pub(crate) bgsave_scheduled: bool,
    /// The running rewrite's base save, to cancel it at shutdown.
    pub(crate) rewrite_progress: Option<Arc<forkless_snapshot::save::Progress>>,
    /// The child writing the base of a fork-mode rewrite, to stop it at shutdown.
    pub(crate) rewrite_fork_pid: Option<i32>,
    /// The copy-on-write peak of the last fork-mode rewrite's child: `aof_last_cow_size`.
    pub(crate) last_cow_bytes: u64,
    /// Holds automatic and scheduled rewrites back after repeated failures.
    pub(crate) limit: RewriteLimit,
    /// Set when `CONFIG SET appendonly no` cancelled the running rewrite
    /// (`rewrite::discard`): its end is then neither a success nor a failure.
    pub(crate) rewrite_discarded: bool,
}

/// Redis's `aofRewriteLimited`: once `AOF_REWRITE_LIMIT_THRESHOLD` rewrites in a row have
/// failed, an automatic or scheduled rewrite waits 1 minute, then (failing again) 2, 4, 8 ...
/// at most 60, so that failing rewrites do not fill the directory with small incr files.
/// BGREWRITEAOF is never held back.
#[derive(Debug, Default)]
pub(crate) struct RewriteLimit {
    next_delay_minutes: u64,
    /// When the next rewrite may start, in Unix seconds; 0 when none is held back.
    next_rewrite_unix_secs: u64,
}

/// Redis's `AOF_REWRITE_LIMITE_THRESHOLD`.
const AOF_REWRITE_LIMIT_THRESHOLD: u64 = 3;
/// Redis's `AOF_REWRITE_LIMITE_MAX_MINUTES`.
const AOF_REWRITE_LIMIT_MAX_MINUTES: u64 = 60;

impl RewriteLimit {
    /// Returns true if and only if a rewrite must not start now, after `consecutive_failures`
    /// failed ones. The first call that holds one back sets the delay and logs Redis's warning;
    /// the next call after the delay lets one through.
    pub(crate) fn limited(&mut self, consecutive_failures: u64, now_unix_secs: u64) -> bool {
        if consecutive_failures < AOF_REWRITE_LIMIT_THRESHOLD {
            // Recovering from the limited state.
            *self = RewriteLimit::default();
            return false;
        }
        if self.next_rewrite_unix_secs != 0 {
            if now_unix_secs < self.next_rewrite_unix_secs {
                return true;
            }
            self.next_rewrite_unix_secs = 0;
            return false;
        }
        self.next_delay_minutes =
            (self.next_delay_minutes * 2).clamp(1, AOF_REWRITE_LIMIT_MAX_MINUTES);
        self.next_rewrite_unix_secs = now_unix_secs + self.next_delay_minutes * 60;
        tracing::warn!(
            "Background AOF rewrite has repeatedly failed and triggered the limit, will retry in {} minutes",
            self.next_delay_minutes
        );
        true
    }
}

impl Default for State {
    fn default() -> Self {
        State {
            current: None,
            previous: None,
            manifest: Manifest::default(),
            waiting_rewrite: false,
            rewrite_started: None,
            rewrite_scheduled: false,
            last_rewrite_time_sec: -1,
            last_rewrite_ok: true,
            rewrites: 0,
            consecutive_failures: 0,
            base_size_at_rewrite: 0,
            bgsave_scheduled: false,
            rewrite_progress: None,
            rewrite_fork_pid: None,
            last_cow_bytes: 0,
            limit: RewriteLimit::default(),
            rewrite_discarded: false,
        }
    }
}

/// The server's AOF.
#[derive(Debug, Default)]
pub(crate) struct Aof {
    pub(crate) state: Mutex<State>,
    /// True while a writer is attached (the AOF is on, or a rewrite runs): replies to writes
    /// wait for it. The one load a reply pays otherwise.
    pub(crate) on: std::sync::atomic::AtomicBool,
    /// The OS errors of the last failed AOF write and background fsync, each 0 once one
    /// succeeds: writes are refused with MISCONF meanwhile (two relaxed loads per write
    /// command); and `aof_delayed_fsync`. Shared by every writer.
    pub(crate) shared: writer::Shared,
    /// Set at shutdown: a rewrite stops waiting for its cut, or its base save stops.
    pub(crate) cancel_rewrite: std::sync::atomic::AtomicBool,
    /// Counts the changes of `State::current` and `State::previous` (each under the state's
    /// lock, [`Aof::writers_changed`]): a worker's cached owner ([`Aof::owner`]) is good while
    /// this has not moved. Read-mostly, so the lookups of both workers share its cache line.
    generation: std::sync::atomic::AtomicU64,
}

std::thread_local! {
    /// The writer this thread last waited on, with the generation it was found in: a reply
    /// that waits for the AOF finds its writer without the state's lock (which every
    /// pipeline of every worker would take otherwise).
    static OWNER: std::cell::RefCell<Option<(u64, Arc<Writer>)>> =
        const { std::cell::RefCell::new(None) };
}

impl Aof {
    /// The OS error of the failed AOF write that refuses writes, if any.
    pub(crate) fn write_errno(&self) -> Option<i32> {
        let errno = self.shared.write_errno.load(Ordering::Relaxed);
        if errno != 0 {
            return Some(errno);
        }
        // Redis's `aof_bio_fsync_status`: a failed background fsync refuses writes too.
        let errno = self.shared.fsync_errno.load(Ordering::Relaxed);
        (errno != 0).then_some(errno)
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The writers attached: the current one, and during a rewrite the previous one.
    fn writers(&self) -> Vec<Arc<Writer>> {
        let state = self.state();
        state
            .current
            .iter()
            .map(|active| Arc::clone(&active.writer))
            .chain(state.previous.iter().cloned())
            .collect()
    }

    /// Notes that `State::current` or `State::previous` changed. Called with the state's
    /// lock held, in the same critical section as the change.
    pub(crate) fn writers_changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The writer that logs the effect numbered `seq`, if any: `Err(())` while a writer that
    /// may own it does not know its first number yet.
    fn owner(&self, seq: u64) -> Result<Option<Arc<Writer>>, ()> {
        let generation = self.generation.load(Ordering::Acquire);
        let cached = OWNER.with(|owner| {
            owner
                .borrow()
                .as_ref()
                .filter(|(found_in, writer)| *found_in == generation && writer.owns(seq))
                .map(|(_, writer)| Arc::clone(writer))
        });
        if let Some(writer) = cached {
            return Ok(Some(writer));
        }
        let state = self.state();
        let generation = self.generation.load(Ordering::Acquire);
        let current = state.current.as_ref().map(|active| &active.writer);
        let mut starting = false;
        for writer in current.into_iter().chain(state.previous.as_ref()) {
            if writer.owns(seq) {
                OWNER.with(|owner| {
                    *owner.borrow_mut() = Some((generation, Arc::clone(writer)));
                });
                return Ok(Some(Arc::clone(writer)));
            }
            starting |= writer.starting();
        }
        if starting { Err(()) } else { Ok(None) }
    }

    /// Waits until the effect numbered `seq` has reached the file of the writer that logs it:
    /// written with `everysec` and `no` (as Redis writes its AOF buffer before the replies go
    /// out), fsynced with `always`. Returns at once with the AOF off.
    pub(crate) async fn wait_durable(&self, seq: u64) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        loop {
            let owner = match self.owner(seq) {
                Ok(Some(owner)) => owner,
                // Not logged (the AOF is off).
                Ok(None) => return,
                // A writer in early mode owns nothing: look again once the cut is known.
                Err(()) => {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    continue;
                }
            };
            if !owner.always() && !owner.answered(seq) {
                // As Redis writes its AOF buffer once per event-loop iteration, after every
                // ready client has run: the connections ready on this worker run first, so
                // that one write(2) answers them all.
                tokio::task::yield_now().await;
            }
            owner.wait_durable(seq).await;
            if owner.owns(seq) {
                return;
            }
        }
    }
}

/// Where the AOF lives and what its files are called.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) dir: PathBuf,
    pub(crate) filename: String,
}

impl Names {
    pub(crate) fn of(config: &Config) -> Names {
        Names {
            dir: config.dir.join(config.appenddirname()),
            filename: config.appendfilename().to_owned(),
        }
    }

    pub(crate) fn manifest(&self) -> String {
        format!("{}.manifest", self.filename)
    }

    pub(crate) fn base(&self, seq: u64, rdb: bool) -> String {
        format!(
            "{}.{seq}.base.{}",
            self.filename,
            if rdb { "rdb" } else { "aof" }
        )
    }

    pub(crate) fn incr(&self, seq: u64) -> String {
        format!("{}.{seq}.incr.aof", self.filename)
    }

    /// Redis's temp incr file, which takes the writes while the AOF is being switched on and
    /// is renamed to the next incr once the first base is written.
    pub(crate) fn temp_incr(&self) -> String {
        format!("temp-{}.incr", self.filename)
    }
}

/// `CONFIG SET` changed options: a new `appendfsync` reaches the writers, `appendonly`
/// switches the AOF on (a rewrite writes the base first) or off. `in_exec`: the CONFIG SET
/// runs inside EXEC. Err is Redis's reply when the AOF cannot be switched on (its rewrite could
/// not start): the caller restores the configuration, as Redis's CONFIG SET does.
pub(crate) fn config_changed(
    server: &Server,
    changed: &[&str],
    in_exec: bool,
) -> Result<(), String> {
    let config = server.config();
    let (appendonly, policy) = (config.appendonly, config.appendfsync);
    drop(config);
    if changed.contains(&"aof-timestamp-enabled") {
        let on = server.config().aof_timestamp_enabled();
        for writer in server.aof.writers() {
            writer.timestamps.store(on, Ordering::Relaxed);
        }
    }
    if changed.contains(&"aof-disable-auto-gc") && !server.config().aof_disable_auto_gc() {
        // As Redis's apply function: the history kept meanwhile goes now.
        let (names, manifest) = (
            Names::of(&server.config()),
            server.aof.state().manifest.clone(),
        );
        rewrite::delete_history(server, &names, manifest);
    }
    if changed.contains(&"appendfsync") {
        for writer in server.aof.writers() {
            writer.set_policy(policy);
        }
    }
    if changed.contains(&"appendonly") {
        let on = server.aof.state().current.is_some();
        if appendonly && !on {
            server.aof.state().waiting_rewrite = true;
            if let Err(err) = rewrite::start_background(server, rewrite::Caller::command(in_exec)) {
                server.aof.state().waiting_rewrite = false;
                tracing::warn!(
                    "Redis needs to enable the AOF but can't trigger a background AOF rewrite operation. ({err})"
                );
                return Err(
                    "ERR CONFIG SET failed (possibly related to argument 'appendonly') - \
                     Unable to turn on AOF. Check server logs."
                        .into(),
                );
            }
        } else if !appendonly {
            if on || server.aof.state().waiting_rewrite {
                // Redis's stopAppendOnly kills the rewrite's child: nothing of it is kept.
                rewrite::discard(server);
            }
            if server.aof.state().current.is_some() {
                stop(server);
            }
            // Redis's stopAppendOnly: a rewrite scheduled to switch the AOF on is not wanted
            // any more.
            let mut state = server.aof.state();
            if state.rewrite_started.is_none() {
                state.rewrite_scheduled = false;
                state.waiting_rewrite = false;
            }
        }
    }
    Ok(())
}

/// Redis's automatic rewrite (`serverCron`): when the AOF has grown by
/// `auto-aof-rewrite-percentage` over its size after the last rewrite (or at startup) and is
/// over `auto-aof-rewrite-min-size`. Called by the save-point timer.
pub(crate) fn auto_rewrite(server: &Server) {
    if server.keyspace.save_running() {
        return;
    }
    // A rewrite scheduled after a failed one while the AOF is being switched on (Redis's
    // serverCron), unless the limit holds it back.
    let retry = {
        let mut state = server.aof.state();
        state.rewrite_scheduled && state.rewrite_started.is_none() && {
            let failures = state.consecutive_failures;
            !state.limit.limited(failures, unix_ms() / 1000)
        }
    };
    if retry {
        if let Err(err) = rewrite::start_background(server, rewrite::Caller::Background) {
            tracing::debug!("scheduled AOF rewrite: {err}");
        }
        return;
    }
    let config = server.config();
    let percentage = config.stored_int("auto-aof-rewrite-percentage", 100);
    let min_size = config.stored_int("auto-aof-rewrite-min-size", 64 << 20);
    if !config.appendonly || percentage <= 0 {
        return;
    }
    drop(config);
    let (size, base) = {
        let state = server.aof.state();
        let Some(active) = &state.current else { return };
        if state.rewrite_started.is_some() || state.waiting_rewrite {
            return;
        }
        let size = active.writer.base_size.load(Ordering::Relaxed)
            + active.writer.incr_size.load(Ordering::Relaxed);
        (size, state.base_size_at_rewrite.max(1))
    };
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    let base = i64::try_from(base).unwrap_or(i64::MAX);
    if size <= min_size {
        return;
    }
    let growth = size.saturating_mul(100) / base - 100;
    if growth >= percentage && !rewrite_limited(server) {
        tracing::info!("Starting automatic rewriting of AOF on {growth}% growth");
        if let Err(err) = rewrite::start_background(server, rewrite::Caller::Background) {
            tracing::debug!("automatic AOF rewrite: {err}");
        }
    }
}

/// Returns true if and only if the rewrite limit holds an automatic rewrite back now.
fn rewrite_limited(server: &Server) -> bool {
    let mut state = server.aof.state();
    let failures = state.consecutive_failures;
    state.limit.limited(failures, unix_ms() / 1000)
}

/// DEBUG LOADAOF: the writer flushes, fsyncs and detaches, the dataset is emptied and the AOF
/// loaded again from its files as at startup (`load::load_at_startup`, which reopens the last
/// incr file and attaches a new writer). With the AOF off its files are loaded all the same, as
/// Redis does, and it stays off. The dataset is emptied under the command gate, held
/// exclusively, with the loading flag raised, so other clients get `-LOADING` until the replay
/// (which takes the gate per command, as at startup) ends, as Redis's do.
pub(crate) fn reload(server: &Server, now_ms: u64) -> anyhow::Result<()> {
    let was_on = {
        let _exclusive = server.keyspace.gate().exclusive();
        let was_on = server.aof.state().current.is_some();
        stop(server);
        server
            .persistence
            .loading
            .active
            .store(true, Ordering::Release);
        drop(server.keyspace.flush_all(now_ms));
        was_on
    };
    if was_on {
        load::load_at_startup(server)
    } else {
        load::load_without_opening(server)
    }
}

/// Bytes rendered for the AOF and not yet written (INFO's `mem_aof_buffer`, not counted for
/// eviction, as in Redis). Takes the AOF state's lock: not under a shard lock.
pub(crate) fn buffered_bytes(server: &Server) -> u64 {
    // No writer attached (the AOF off, no rewrite): nothing buffered, and no lock to take
    // (the eviction check reads this before every command over the limit).
    if !server.aof.on.load(Ordering::Relaxed) {
        return 0;
    }
    server
        .aof
        .state()
        .current
        .as_ref()
        .map_or(0, |active| active.writer.buffered())
}

/// Switches the AOF off: the writer flushes, fsyncs and detaches.
pub(crate) fn stop(server: &Server) {
    let active = {
        let mut state = server.aof.state();
        server.aof.writers_changed();
        state.current.take()
    };
    if let Some(mut active) = active {
        server.effects.detach(&server.keyspace, active.consumer);
        active.writer.stop();
        if let Some(thread) = active.thread.take() {
            let _ = thread.join();
        }
    }
    server.aof.shared.write_errno.store(0, Ordering::Relaxed);
    server.aof.shared.fsync_errno.store(0, Ordering::Relaxed);
    server.aof.on.store(false, Ordering::Relaxed);
}

/// The AOF fields of INFO persistence, in Redis 7.0's order.
/// `configured` is `appendonly`, read by the caller: INFO holds the configuration and the
/// persistence state already (the lock order lets no thread read-lock the configuration twice).
pub(crate) fn info_fields(
    server: &Server,
    configured: bool,
    field: &mut dyn FnMut(&str, &dyn std::fmt::Display),
) {
    let state = server.aof.state();
    // Redis's `aof_state != AOF_OFF`: on, or waiting for the rewrite that switches it on.
    let enabled = state.current.is_some() || state.waiting_rewrite;
    let writer = state.current.as_ref().map(|active| &active.writer);
    // Redis: the last write and the last background fsync both succeeded.
    let write_ok = writer.is_none_or(|w| w.last_write_ok.load(Ordering::Relaxed))
        && server.aof.shared.fsync_errno.load(Ordering::Relaxed) == 0;
    field("aof_enabled", &u8::from(enabled));
    field(
        "aof_rewrite_in_progress",
        &u8::from(state.rewrite_started.is_some()),
    );
    field("aof_rewrite_scheduled", &u8::from(state.rewrite_scheduled));
    field("aof_last_rewrite_time_sec", &state.last_rewrite_time_sec);
    field(
        "aof_current_rewrite_time_sec",
        &state.rewrite_started.map_or(-1, |at| {
            i64::try_from(at.elapsed().as_secs()).unwrap_or(i64::MAX)
        }),
    );
    field(
        "aof_last_bgrewrite_status",
        &if state.last_rewrite_ok { "ok" } else { "err" },
    );
    field("aof_rewrites", &state.rewrites);
    field(
        "aof_rewrites_consecutive_failures",
        &state.consecutive_failures,
    );
    field(
        "aof_last_write_status",
        &if write_ok { "ok" } else { "err" },
    );
    field("aof_last_cow_size", &state.last_cow_bytes);
    field("module_fork_in_progress", &0);
    field("module_fork_last_cow_size", &0);
    // Redis prints these while `appendonly` is yes (`server.aof_enabled`).
    if configured {
        let (base, incr, buffered, fsyncing) = writer.map_or((0, 0, 0, false), |writer| {
            (
                writer.base_size.load(Ordering::Relaxed),
                writer.incr_size.load(Ordering::Relaxed),
                writer.buffered(),
                writer.fsync_in_progress.load(Ordering::Relaxed),
            )
        });
        field("aof_current_size", &(base + incr));
        // Redis's `aof_rewrite_base_size`: the AOF's size after the last rewrite (or at
        // startup), what `auto-aof-rewrite-percentage` measures growth against.
        field("aof_base_size", &state.base_size_at_rewrite);
        field("aof_pending_rewrite", &u8::from(state.rewrite_scheduled));
        field("aof_buffer_length", &buffered);
        field("aof_pending_bio_fsync", &u8::from(fsyncing));
        field(
            "aof_delayed_fsync",
            &server.aof.shared.delayed_fsync.load(Ordering::Relaxed),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::RewriteLimit;

    /// Redis's `aofRewriteLimited`: free below 3 failures; then held back 1 minute, let through
    /// once at its end, held back 2 minutes on the next failure, and so on up to an hour; reset
    /// by a success.
    #[test]
    fn the_rewrite_limit_doubles_its_delay_up_to_an_hour_and_resets() {
        let mut limit = RewriteLimit::default();
        let t0 = 1_000_000;
        assert!(!limit.limited(0, t0));
        assert!(!limit.limited(2, t0));
        assert!(limit.limited(3, t0));
        assert!(limit.limited(3, t0 + 59));
        assert!(!limit.limited(3, t0 + 60));
        // That rewrite failed too: 2 minutes now.
        assert!(limit.limited(4, t0 + 61));
        assert!(limit.limited(4, t0 + 61 + 119));
        assert!(!limit.limited(4, t0 + 61 + 120));
        let mut now = t0 + 200;
        let mut delays = Vec::new();
        for _ in 0..6 {
            assert!(limit.limited(5, now));
            let mut waited = 0;
            while limit.limited(5, now + waited) {
                waited += 60;
            }
            delays.push(waited / 60);
            now += waited + 1;
        }
        assert_eq!(delays, [4, 8, 16, 32, 60, 60]);
        // A success resets it: the next failures start from 1 minute again.
        assert!(!limit.limited(0, now));
        assert!(limit.limited(3, now));
        assert!(!limit.limited(3, now + 60));
    }
}
