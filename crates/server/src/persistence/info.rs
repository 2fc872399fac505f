//! The `# Persistence` section of INFO.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{SaveKind, running};
use crate::server::{Server, unix_ms};

/// The `# Persistence` section of INFO: Redis 7.0's fields in Redis's order, then forkless's
/// snapshot fields.
pub(crate) fn info_section(server: &Server, text: &mut String) {
    use std::fmt::Write as _;
    let mut field = |name: &str, value: &dyn std::fmt::Display| {
        let _ = write!(text, "{name}:{value}\r\n");
    };
    let config = server.config();
    let state = server.persistence.state();
    let retained = server.keyspace.retained();
    let running = running(server);
    let running = running.as_deref();
    let progress = running.map(|r| &r.progress);
    let load = |counter: Option<&AtomicU64>| counter.map_or(0, |c| c.load(Ordering::Relaxed));
    let keys_processed = load(progress.map(|p| &p.keys_processed));
    let keys_total = load(progress.map(|p| &p.keys_total));
    let shards_done = progress.map_or(0, |p| p.shards_done.load(Ordering::Relaxed));
    let shards_total = progress.map_or(0, |p| p.shards_total.load(Ordering::Relaxed));
    let bytes_written = progress.map_or(state.last_bytes_written, |p| {
        p.bytes_written.load(Ordering::Relaxed)
    });
    let current_secs = running.map_or(-1, |r| {
        i64::try_from(r.started.elapsed().as_secs()).unwrap_or(i64::MAX)
    });
    let fork_running = running.is_some_and(|r| r.kind == SaveKind::Fork);
    let fork_perc = if fork_running && keys_total > 0 {
        keys_processed as f64 * 100.0 / keys_total as f64
    } else {
        0.0
    };
    let cow_age = match (fork_running, state.current_cow_updated) {
        (true, Some(at)) => at.elapsed().as_secs(),
        _ => 0,
    };
    let loading = &server.persistence.loading;
    let is_loading = server.persistence.loading();
    field("loading", &u8::from(is_loading));
    field(
        "async_loading",
        &u8::from(
            server
                .replication
                .replica
                .async_loading
                .load(Ordering::Relaxed),
        ),
    );
    field("current_cow_peak", &state.current_cow_peak);
    field("current_cow_size", &state.current_cow_bytes);
    field("current_cow_size_age", &cow_age);
    field("current_fork_perc", &format_args!("{fork_perc:.2}"));
    field("current_save_keys_processed", &keys_processed);
    field("current_save_keys_total", &keys_total);
    field(
        "rdb_changes_since_last_save",
        &server
            .keyspace
            .dirty()
            .saturating_sub(state.dirty_at_last_save),
    );
    field("rdb_bgsave_in_progress", &u8::from(running.is_some()));
    field("rdb_last_save_time", &state.last_save_unix_secs);
    field(
        "rdb_last_bgsave_status",
        &if state.last_bgsave_ok { "ok" } else { "err" },
    );
    field("rdb_last_bgsave_time_sec", &state.last_bgsave_time_sec);
    field("rdb_current_bgsave_time_sec", &current_secs);
    field("rdb_saves", &state.saves);
    field("rdb_last_cow_size", &state.last_cow_bytes);
    field("rdb_last_load_keys_expired", &state.last_load_keys_expired);
    field(
        "rdb_last_load_keys_loaded",
        &if is_loading {
            loading.keys_loaded.load(Ordering::Relaxed)
        } else {
            state.last_load_keys_loaded
        },
    );
    crate::aof::info_fields(server, config.appendonly, &mut field);
    if is_loading {
        let start = loading.start_unix_secs.load(Ordering::Relaxed);
        let total = loading.total_bytes.load(Ordering::Relaxed);
        let loaded = loading.loaded_bytes.load(Ordering::Relaxed).min(total);
        let elapsed = (unix_ms() / 1000).saturating_sub(start);
        // Redis's estimate: the time so far, scaled to the bytes left; 1 until a second passed.
        let eta = if elapsed == 0 || loaded == 0 {
            1
        } else {
            (total - loaded) * elapsed / loaded
        };
        field("loading_start_time", &start);
        field("loading_total_bytes", &total);
        // The file's `used-mem` aux field is only known to the loader; 0 until then.
        field("loading_rdb_used_mem", &0);
        field("loading_loaded_bytes", &loaded);
        field(
            "loading_loaded_perc",
            &format!(
                "{:.2}",
                if total == 0 {
                    0.0
                } else {
                    loaded as f64 * 100.0 / total as f64
                }
            ),
        );
        field("loading_eta_seconds", &eta);
    }
    field("snapshot_mode", &config.snapshot_mode.as_str());
    field(
        "rdb_last_bgsave_type",
        &state.last_bgsave_type.map_or("none", SaveKind::as_str),
    );
    field(
        "rdb_current_bgsave_type",
        &running.map_or("none", |r| r.kind.as_str()),
    );
    field(
        "snapshot_fork_child_pid",
        &running.and_then(|r| r.fork_pid).unwrap_or(-1),
    );
    field(
        "snapshot_writer",
        &state.writer.unwrap_or(config.snapshot_writer.as_str()),
    );
    if let Some(reason) = &state.writer_fallback_reason {
        field(
            "snapshot_writer_fallback_reason",
            &reason.replace(['\r', '\n'], " "),
        );
    }
    let percent = if fork_running {
        fork_perc
    } else if shards_total == 0 {
        0.0
    } else {
        shards_done as f64 * 100.0 / shards_total as f64
    };
    field("snapshot_progress", &format_args!("{percent:.2}"));
    field(
        "snapshot_last_cut_usec",
        &server.keyspace.last_cut_pause().as_micros(),
    );
    field("snapshot_bytes_written", &bytes_written);
    field("snapshot_last_keys_saved", &state.last_keys_saved);
    field(
        "snapshot_last_keys_saved_early",
        &state.last_keys_saved_early,
    );
    field("snapshot_retained_versions", &retained.versions);
    field("snapshot_retained_bytes", &retained.bytes);
    field("snapshot_peak_retained_bytes", &retained.peak_bytes);
    let (budget, budget_hits) = server.keyspace.retained_budget();
    field("snapshot_retained_budget", &budget);
    field("snapshot_retained_budget_hits", &budget_hits);
    field(
        "snapshot_retained_budget_overruns",
        &server.keyspace.retained_budget_overruns(),
    );
    if let Some(err) = &state.last_error {
        field("snapshot_last_error", &err.replace(['\r', '\n'], " "));
    }
}
