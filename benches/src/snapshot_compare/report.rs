//! Results: the time series of one run, the per-mode summary, CSV files and the printed table.

use std::fmt::Write as _;
use std::io::{self, Write};

use hdrhistogram::Histogram;

/// Which part of a run a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The overwrite workload without a snapshot.
    Baseline,
    /// From BGSAVE until the save finished.
    Snapshot,
    /// A short window after the save.
    After,
}

impl Phase {
    /// The name in CSVs.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::Snapshot => "snapshot",
            Phase::After => "after",
        }
    }
}

/// One sample of a run's time series.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Milliseconds since BGSAVE was sent (negative during the baseline window).
    pub t_ms: i64,
    /// The part of the run.
    pub phase: Phase,
    /// Anonymous memory of the server (and its fork child), counted once.
    pub anon_bytes: u64,
    /// Requests completed since the previous sample.
    pub ops_in_interval: u64,
    /// p99 latency of those requests, µs (0 when there were none).
    pub p99_us_in_interval: u64,
    /// The operation is running: INFO `rdb_bgsave_in_progress` (bgsave),
    /// `aof_rewrite_in_progress` or `aof_rewrite_scheduled` (bgrewriteaof), the replica not yet
    /// in sync (fullsync). The CSV column keeps its first name.
    pub bgsave_in_progress: bool,
    /// forkless `snapshot_retained_bytes` or Redis `current_cow_size`, when reported.
    pub retained_or_cow_bytes: Option<u64>,
    /// INFO `used_memory`, sampled in the eviction scenario (`--maxmemory-fraction`).
    pub used_memory: Option<u64>,
    /// `--operation fullsync`: the primary's buffered writes for its replicas (INFO memory
    /// `mem_total_replication_buffers`, else `mem_clients_slaves`).
    pub repl_buffer_bytes: Option<u64>,
}

/// Latency percentiles and throughput over a window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Window {
    /// Requests completed.
    pub ops: u64,
    /// Length of the window in seconds.
    pub secs: f64,
    /// Latency percentiles in µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Maximum, µs.
    pub max_us: u64,
}

impl Window {
    /// Summarizes `histogram` recorded over `secs` seconds.
    pub fn from_histogram(histogram: &Histogram<u64>, secs: f64) -> Window {
        if histogram.is_empty() {
            return Window {
                secs,
                ..Window::default()
            };
        }
        Window {
            ops: histogram.len(),
            secs,
            p50_us: histogram.value_at_quantile(0.50),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }

    /// Requests per second.
    pub fn ops_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// How one mode's snapshot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `rdb_last_bgsave_status:ok` after the save.
    SaveOk,
    /// BGSAVE replied with an error (the text), or the save ended with status `err`.
    BgsaveError(String),
    /// The save failed and the kernel OOM-killed a process in the cgroup while the server
    /// lived on: the fork child (or a forkless helper).
    ChildOomKilled,
    /// The server process is gone (the description says how; OOM when the cgroup counted one).
    ServerGone(String),
    /// The save did not finish within the time allowed.
    TimedOut,
}

impl Outcome {
    /// Short text for tables and CSVs.
    pub fn describe(&self) -> String {
        match self {
            Outcome::SaveOk => "save ok".to_owned(),
            Outcome::BgsaveError(text) => format!("BGSAVE error: {text}"),
            Outcome::ChildOomKilled => "child OOM-killed, server alive".to_owned(),
            Outcome::ServerGone(how) => format!("server gone ({how})"),
            Outcome::TimedOut => "save timed out".to_owned(),
        }
    }
}

/// Everything measured for one mode.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModeResult {
    /// `epoch`, `fork` or `redis`.
    pub mode: String,
    /// What was measured: `bgsave`, `bgrewriteaof` or `fullsync` (empty: bgsave).
    pub operation: String,
    /// How the save ended.
    pub outcome: Option<Outcome>,
    /// Keys loaded (and DBSIZE after loading).
    pub n_keys: u64,
    /// Keys plus values, bytes.
    pub dataset_bytes: u64,
    /// Seconds the bulk load took.
    pub load_secs: f64,
    /// Where memory figures come from.
    pub memory_source: String,
    /// Anonymous memory right after loading.
    pub loaded_anon: u64,
    /// Anonymous memory at the last sample before BGSAVE.
    pub pre_snapshot_anon: u64,
    /// Highest anonymous memory from BGSAVE until the save finished.
    pub peak_anon: u64,
    /// Anonymous memory at the end of the after-window.
    pub after_anon: Option<u64>,
    /// From sending BGSAVE until INFO said it was no longer in progress.
    pub snapshot_secs: Option<f64>,
    /// Size of the dump written.
    pub file_bytes: Option<u64>,
    /// Keys in the dump (forkless `snapshot_last_keys_saved`, else the file's RESIZEDB hint).
    pub keys_saved: Option<u64>,
    /// `latest_fork_usec` (fork) or `snapshot_last_cut_usec` (epoch).
    pub start_pause_us: Option<u64>,
    /// Which INFO field `start_pause_us` came from.
    pub start_pause_field: Option<&'static str>,
    /// The BGSAVE command's round trip, µs.
    pub bgsave_rtt_us: Option<u64>,
    /// INFO `rdb_last_bgsave_type` (forkless with fork mode), when present.
    pub bgsave_type: Option<String>,
    /// INFO `rdb_last_cow_size`, when present and not 0.
    pub cow_bytes: Option<u64>,
    /// forkless `snapshot_peak_retained_bytes`.
    pub retained_peak_bytes: Option<u64>,
    /// forkless `snapshot_retained_budget` and `snapshot_retained_budget_hits` (writes that
    /// waited for room), when the server reports them.
    pub retained_budget: Option<(u64, u64)>,
    /// The workload without a snapshot.
    pub baseline: Window,
    /// The workload from BGSAVE until the save finished.
    pub during: Window,
    /// Client errors (error replies, lost connections) and the first one.
    pub client_errors: u64,
    /// The first client error's text.
    pub first_client_error: Option<String>,
    /// DBSIZE after the run, if the server still answered.
    pub dbsize_after: Option<u64>,
    /// The cgroup limit, when `--memory-limit-factor` was given.
    pub memory_limit_bytes: Option<u64>,
    /// OOM kills counted by the cgroup.
    pub oom_kills: Option<u64>,
    /// The eviction scenario: the server's `maxmemory`.
    pub maxmemory_bytes: Option<u64>,
    /// The eviction scenario: highest INFO `used_memory` from BGSAVE until the save finished.
    pub peak_used_memory: Option<u64>,
    /// The eviction scenario: the highest `used_memory - (maxmemory + retained)` over the
    /// samples taken during the save (retained: forkless `snapshot_retained_bytes`, 0 for
    /// Redis); negative when used_memory stayed under the bound.
    pub max_used_over_bound: Option<i64>,
    /// INFO `evicted_keys` at the end of the run.
    pub evicted_keys: Option<u64>,
    /// fullsync: the highest buffered-writes figure ([`Sample::repl_buffer_bytes`]) during it.
    pub repl_buffer_peak: Option<u64>,
    /// fullsync: the highest (anon memory - before - buffered writes) during it: the RDB side.
    pub rdb_side_peak: Option<u64>,
    /// fullsync: full syncs the primary started (INFO stats `sync_full` after - before); more
    /// than 1 means the sync restarted.
    pub full_syncs: Option<u64>,
    /// fullsync: the replica's DBSIZE once in sync.
    pub replica_dbsize: Option<u64>,
}

impl ModeResult {
    /// Peak extra anonymous memory over the pre-snapshot level.
    pub fn peak_extra(&self) -> u64 {
        self.peak_anon.saturating_sub(self.pre_snapshot_anon)
    }

    /// `peak_extra` as % of the dataset.
    pub fn peak_extra_pct(&self) -> f64 {
        if self.dataset_bytes == 0 {
            0.0
        } else {
            self.peak_extra() as f64 * 100.0 / self.dataset_bytes as f64
        }
    }

    /// File size / snapshot time, MB/s (10^6 bytes).
    pub fn write_mb_per_sec(&self) -> Option<f64> {
        let secs = self.snapshot_secs?;
        let bytes = self.file_bytes?;
        (secs > 0.0).then(|| bytes as f64 / 1e6 / secs)
    }

    /// Throughput during the save / baseline.
    pub fn throughput_ratio(&self) -> Option<f64> {
        let base = self.baseline.ops_per_sec();
        (base > 0.0).then(|| self.during.ops_per_sec() / base)
    }
}

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| v.to_string())
}

/// Quotes a CSV field when it needs it.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Header of the per-run time series CSV.
pub const SERIES_HEADER: &str = "t_ms,mode,anon_bytes,ops_in_interval,p99_us_in_interval,\
bgsave_in_progress,phase,retained_or_cow_bytes,used_memory,repl_buffer_bytes";

/// Writes one run's time series.
pub fn write_series_csv<W: Write>(out: &mut W, mode: &str, samples: &[Sample]) -> io::Result<()> {
    writeln!(out, "{SERIES_HEADER}")?;
    for s in samples {
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{}",
            s.t_ms,
            csv_field(mode),
            s.anon_bytes,
            s.ops_in_interval,
            s.p99_us_in_interval,
            u8::from(s.bgsave_in_progress),
            s.phase.name(),
            s.retained_or_cow_bytes
                .map(|b| b.to_string())
                .unwrap_or_default(),
            s.used_memory.map(|b| b.to_string()).unwrap_or_default(),
            s.repl_buffer_bytes
                .map(|b| b.to_string())
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

/// Columns of the summary CSV, in order.
pub const SUMMARY_COLUMNS: [&str; 50] = [
    "mode",
    "outcome",
    "keys",
    "dataset_bytes",
    "load_secs",
    "memory_source",
    "loaded_anon_bytes",
    "pre_snapshot_anon_bytes",
    "peak_anon_bytes",
    "peak_extra_bytes",
    "peak_extra_pct_of_dataset",
    "after_anon_bytes",
    "snapshot_secs",
    "file_bytes",
    "write_mb_per_sec",
    "keys_saved",
    "start_pause_us",
    "start_pause_field",
    "bgsave_rtt_us",
    "bgsave_type",
    "cow_bytes",
    "retained_peak_bytes",
    "retained_budget_bytes",
    "retained_budget_hits",
    "baseline_ops_per_sec",
    "baseline_p50_us",
    "baseline_p99_us",
    "baseline_p999_us",
    "baseline_max_us",
    "during_ops_per_sec",
    "during_p50_us",
    "during_p99_us",
    "during_p999_us",
    "during_max_us",
    "throughput_ratio",
    "client_errors",
    "first_client_error",
    "dbsize_after",
    "memory_limit_bytes",
    "oom_kills",
    "during_ops",
    "maxmemory_bytes",
    "peak_used_memory_bytes",
    "max_used_over_bound_bytes",
    "evicted_keys",
    "operation",
    "repl_buffer_peak_bytes",
    "rdb_side_peak_bytes",
    "full_syncs",
    "replica_dbsize",
];

/// The summary CSV's cells for one mode, in [`SUMMARY_COLUMNS`] order (`n/a` is an empty cell).
pub fn summary_row(r: &ModeResult) -> Vec<String> {
    let o = |v: Option<String>| v.unwrap_or_default();
    vec![
        r.mode.clone(),
        r.outcome
            .as_ref()
            .map(Outcome::describe)
            .unwrap_or_default(),
        r.n_keys.to_string(),
        r.dataset_bytes.to_string(),
        format!("{:.3}", r.load_secs),
        r.memory_source.clone(),
        r.loaded_anon.to_string(),
        r.pre_snapshot_anon.to_string(),
        r.peak_anon.to_string(),
        r.peak_extra().to_string(),
        format!("{:.2}", r.peak_extra_pct()),
        o(r.after_anon.map(|v| v.to_string())),
        o(r.snapshot_secs.map(|v| format!("{v:.3}"))),
        o(r.file_bytes.map(|v| v.to_string())),
        o(r.write_mb_per_sec().map(|v| format!("{v:.1}"))),
        o(r.keys_saved.map(|v| v.to_string())),
        o(r.start_pause_us.map(|v| v.to_string())),
        o(r.start_pause_field.map(str::to_owned)),
        o(r.bgsave_rtt_us.map(|v| v.to_string())),
        o(r.bgsave_type.clone()),
        o(r.cow_bytes.map(|v| v.to_string())),
        o(r.retained_peak_bytes.map(|v| v.to_string())),
        o(r.retained_budget.map(|(budget, _)| budget.to_string())),
        o(r.retained_budget.map(|(_, hits)| hits.to_string())),
        format!("{:.0}", r.baseline.ops_per_sec()),
        r.baseline.p50_us.to_string(),
        r.baseline.p99_us.to_string(),
        r.baseline.p999_us.to_string(),
        r.baseline.max_us.to_string(),
        format!("{:.0}", r.during.ops_per_sec()),
        r.during.p50_us.to_string(),
        r.during.p99_us.to_string(),
        r.during.p999_us.to_string(),
        r.during.max_us.to_string(),
        o(r.throughput_ratio().map(|v| format!("{v:.3}"))),
        r.client_errors.to_string(),
        o(r.first_client_error.clone()),
        o(r.dbsize_after.map(|v| v.to_string())),
        o(r.memory_limit_bytes.map(|v| v.to_string())),
        o(r.oom_kills.map(|v| v.to_string())),
        r.during.ops.to_string(),
        o(r.maxmemory_bytes.map(|v| v.to_string())),
        o(r.peak_used_memory.map(|v| v.to_string())),
        o(r.max_used_over_bound.map(|v| v.to_string())),
        o(r.evicted_keys.map(|v| v.to_string())),
        r.operation.clone(),
        o(r.repl_buffer_peak.map(|v| v.to_string())),
        o(r.rdb_side_peak.map(|v| v.to_string())),
        o(r.full_syncs.map(|v| v.to_string())),
        o(r.replica_dbsize.map(|v| v.to_string())),
    ]
    .into_iter()
    .map(|cell| csv_field(&cell))
    .collect()
}

/// Writes the summary CSV.
pub fn write_summary_csv<W: Write>(out: &mut W, results: &[ModeResult]) -> io::Result<()> {
    writeln!(out, "{}", SUMMARY_COLUMNS.join(","))?;
    for r in results {
        writeln!(out, "{}", summary_row(r).join(","))?;
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / f64::from(1u32 << 20))
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// The summary as a Markdown table, one column per mode.
pub fn summary_table(results: &[ModeResult]) -> String {
    let mut rows: Vec<(&str, Vec<String>)> = Vec::new();
    let mut row = |name, f: &dyn Fn(&ModeResult) -> String| {
        rows.push((name, results.iter().map(f).collect()));
    };
    row("outcome", &|r| {
        r.outcome
            .as_ref()
            .map_or_else(|| "n/a".to_owned(), Outcome::describe)
    });
    if results
        .iter()
        .any(|r| !r.operation.is_empty() && r.operation != "bgsave")
    {
        row("operation", &|r| r.operation.clone());
    }
    row("BGSAVE type (INFO)", &|r| opt(r.bgsave_type.as_ref()));
    row("dataset (keys + values)", &|r| {
        format!("{} ({} keys)", mib(r.dataset_bytes), r.n_keys)
    });
    row("anon memory before BGSAVE", &|r| mib(r.pre_snapshot_anon));
    row("peak extra anon memory", &|r| {
        format!(
            "{} ({:.1}% of dataset)",
            mib(r.peak_extra()),
            r.peak_extra_pct()
        )
    });
    row("anon memory 1 s after save, vs before", &|r| {
        r.after_anon.map_or_else(
            || "n/a".to_owned(),
            |after| {
                format!(
                    "{:+.0} MiB",
                    (after as f64 - r.pre_snapshot_anon as f64) / f64::from(1u32 << 20)
                )
            },
        )
    });
    row("snapshot wall time", &|r| {
        opt(r.snapshot_secs.map(|s| format!("{s:.2} s")))
    });
    row(
        "write speed (file / time)",
        &|r| match (r.write_mb_per_sec(), r.file_bytes) {
            (Some(speed), Some(bytes)) => format!("{speed:.0} MB/s ({})", mib(bytes)),
            _ => "n/a".to_owned(),
        },
    );
    row("keys saved / loaded", &|r| {
        format!("{} / {}", opt(r.keys_saved), r.n_keys)
    });
    row(
        "start pause (server)",
        &|r| match (r.start_pause_us, r.start_pause_field) {
            // Three decimals: an epoch cut takes microseconds, a fork milliseconds.
            (Some(us), Some(field)) => format!("{:.3} ms ({field})", us as f64 / 1000.0),
            _ => "n/a".to_owned(),
        },
    );
    row("BGSAVE round trip", &|r| {
        opt(r.bgsave_rtt_us.map(|us| format!("{} ms", ms(us))))
    });
    row("CoW bytes (rdb_last_cow_size)", &|r| {
        opt(r.cow_bytes.map(mib))
    });
    row("retained peak (forkless)", &|r| {
        opt(r.retained_peak_bytes.map(mib))
    });
    if results.iter().any(|r| r.full_syncs.is_some()) {
        row("buffered writes peak (replication buffers)", &|r| {
            opt(r
                .repl_buffer_peak
                .map(|b| format!("{} ({:.1}% of dataset)", mib(b), pct(b, r.dataset_bytes))))
        });
        row("RDB side peak (extra - buffered writes)", &|r| {
            opt(r
                .rdb_side_peak
                .map(|b| format!("{} ({:.1}% of dataset)", mib(b), pct(b, r.dataset_bytes))))
        });
        row("full syncs started (sync_full)", &|r| opt(r.full_syncs));
        row("replica DBSIZE when in sync", &|r| opt(r.replica_dbsize));
    }
    row("retained budget / writes that waited", &|r| {
        opt(r
            .retained_budget
            .map(|(budget, hits)| format!("{} / {hits}", mib(budget))))
    });
    row("ops/s baseline", &|r| {
        format!("{:.0}", r.baseline.ops_per_sec())
    });
    row("ops/s during save (ratio)", &|r| {
        format!(
            "{:.0} ({})",
            r.during.ops_per_sec(),
            opt(r.throughput_ratio().map(|x| format!("{x:.2}")))
        )
    });
    row("p50/p99/p99.9/max ms baseline", &|r| {
        let w = r.baseline;
        format!(
            "{} / {} / {} / {}",
            ms(w.p50_us),
            ms(w.p99_us),
            ms(w.p999_us),
            ms(w.max_us)
        )
    });
    row("p50/p99/p99.9/max ms during", &|r| {
        let w = r.during;
        format!(
            "{} / {} / {} / {}",
            ms(w.p50_us),
            ms(w.p99_us),
            ms(w.p999_us),
            ms(w.max_us)
        )
    });
    row("client errors", &|r| match &r.first_client_error {
        Some(first) => format!("{} (first: {first})", r.client_errors),
        None => r.client_errors.to_string(),
    });
    row("DBSIZE after", &|r| opt(r.dbsize_after));
    if results.iter().any(|r| r.memory_limit_bytes.is_some()) {
        row("cgroup memory limit", &|r| {
            opt(r.memory_limit_bytes.map(mib))
        });
        row("OOM kills in cgroup", &|r| opt(r.oom_kills));
    }
    if results.iter().any(|r| r.maxmemory_bytes.is_some()) {
        row("maxmemory", &|r| opt(r.maxmemory_bytes.map(mib)));
        row("peak used_memory during save", &|r| {
            opt(r.peak_used_memory.map(mib))
        });
        row("max used_memory - (maxmemory + retained)", &|r| {
            opt(r
                .max_used_over_bound
                .map(|b| format!("{:+.1} MiB", b as f64 / f64::from(1u32 << 20))))
        });
        row("evicted keys (run total)", &|r| opt(r.evicted_keys));
    }
    row("memory source", &|r| r.memory_source.clone());

    let mut text = String::new();
    let _ = write!(text, "| |");
    for r in results {
        let _ = write!(text, " {} |", r.mode);
    }
    let _ = write!(text, "\n|---|");
    for _ in results {
        let _ = write!(text, "---|");
    }
    text.push('\n');
    for (name, cells) in rows {
        let _ = writeln!(
            text,
            "| {name} | {} |",
            cells.join(" | ").replace('\n', " ")
        );
    }
    text
}

/// `YYYYMMDD-HHMMSS` (UTC) for `unix_secs`, for the default results folder name.
pub fn utc_timestamp(unix_secs: u64) -> String {
    let days = i64::try_from(unix_secs / 86_400).unwrap_or(0);
    let secs_of_day = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> ModeResult {
        ModeResult {
            mode: "epoch".into(),
            outcome: Some(Outcome::SaveOk),
            n_keys: 1000,
            dataset_bytes: 1_000_000,
            pre_snapshot_anon: 2_000_000,
            peak_anon: 2_050_000,
            snapshot_secs: Some(2.0),
            file_bytes: Some(4_000_000),
            baseline: Window {
                ops: 1000,
                secs: 1.0,
                ..Window::default()
            },
            during: Window {
                ops: 1000,
                secs: 2.0,
                ..Window::default()
            },
            first_client_error: Some("ERR a, \"b\"".into()),
            ..ModeResult::default()
        }
    }

    #[test]
    fn derived_figures() {
        let r = result();
        assert_eq!(r.peak_extra(), 50_000);
        assert!((r.peak_extra_pct() - 5.0).abs() < 1e-9);
        assert_eq!(r.write_mb_per_sec(), Some(2.0));
        assert_eq!(r.throughput_ratio(), Some(0.5));
        let below = ModeResult {
            peak_anon: 1,
            ..result()
        };
        assert_eq!(below.peak_extra(), 0);
        assert_eq!(ModeResult::default().throughput_ratio(), None);
    }

    #[test]
    fn window_percentiles() {
        let mut h = crate::snapshot_compare::workload::latency_histogram();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let w = Window::from_histogram(&h, 2.0);
        assert_eq!(w.ops, 1000);
        assert_eq!(w.p50_us, 500);
        assert_eq!(w.p99_us, 990);
        assert_eq!(w.max_us, 1000);
        assert_eq!(w.ops_per_sec(), 500.0);
        let empty =
            Window::from_histogram(&crate::snapshot_compare::workload::latency_histogram(), 1.0);
        assert_eq!(empty.ops, 0);
    }

    #[test]
    fn csv_outputs() {
        let mut out = Vec::new();
        let sample = Sample {
            t_ms: -15,
            phase: Phase::Baseline,
            anon_bytes: 10,
            ops_in_interval: 3,
            p99_us_in_interval: 99,
            bgsave_in_progress: false,
            retained_or_cow_bytes: None,
            used_memory: None,
            repl_buffer_bytes: None,
        };
        write_series_csv(&mut out, "epoch", std::slice::from_ref(&sample)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            format!("{SERIES_HEADER}\n-15,epoch,10,3,99,0,baseline,,,\n")
        );
        let mut out = Vec::new();
        let evicting = Sample {
            used_memory: Some(7),
            retained_or_cow_bytes: Some(2),
            ..sample
        };
        write_series_csv(&mut out, "epoch", &[evicting]).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .ends_with("\n-15,epoch,10,3,99,0,baseline,2,7,\n")
        );

        let mut out = Vec::new();
        write_summary_csv(&mut out, &[result()]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].split(',').count(), SUMMARY_COLUMNS.len());
        assert_eq!(summary_row(&result()).len(), SUMMARY_COLUMNS.len());
        assert!(lines[1].starts_with("epoch,save ok,1000,1000000,"));
        assert!(lines[1].contains("\"ERR a, \"\"b\"\"\""));
    }

    #[test]
    fn table_says_na_for_missing_fields() {
        let table = summary_table(&[result()]);
        assert!(table.starts_with("| | epoch |\n|---|---|\n"));
        assert!(table.contains("| start pause (server) | n/a |"));
        assert!(table.contains("| peak extra anon memory | 0 MiB (5.0% of dataset) |"));
        assert!(!table.contains("cgroup memory limit"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(0), "19700101-000000");
        assert_eq!(utc_timestamp(951_782_400 + 3_661), "20000229-010101");
        assert_eq!(utc_timestamp(1_700_000_000), "20231114-221320");
    }
}
