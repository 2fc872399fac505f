//! `snapshot-compare`: forkless epoch snapshots, forkless fork snapshots and Redis's BGSAVE side
//! by side, on the same generated data under the same full-speed overwrite workload.
//!
//! ```text
//! for each mode (epoch, fork, redis):
//!   server.rs    start the server on a free loopback port (own memory cgroup when possible)
//!                (--operation bgrewriteaof: appendonly yes; fullsync: a replica, not measured)
//!   workload.rs  load N keys over parallel pipelined connections; start the overwrite clients
//!   mod.rs       baseline window: sample memory, per-interval latency, INFO every ~15 ms
//!                BGSAVE; sample until rdb_bgsave_in_progress:0; a short after-window
//!                (BGREWRITEAOF: until aof_rewrite_in_progress and _scheduled are 0;
//!                 REPLICAOF on the replica: until it says master_link_status:up and
//!                 master_sync_in_progress:0, the primary's replication buffers sampled too)
//!   memory.rs    anonymous memory counted once (cgroup memory.stat, else Pss_Anon sums)
//! report.rs      per-mode CSV, summary CSV, the table;  plot.rs  the SVG
//! ```
//!
//! Limits: one run per invocation (no medians); the client shares the machine with the server,
//! so on few cores client and server compete for CPU. Nothing here is a pass/fail threshold.

pub mod cgroup;
pub mod info;
pub mod memory;
pub mod plot;
pub mod report;
pub mod resp;
pub mod server;
pub mod workload;

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;

use self::cgroup::Cgroup;
use self::info::Info;
use self::memory::MemorySource;
use self::report::{ModeResult, Outcome, Phase, Sample, Window};
use self::resp::{Conn, Reply};
pub use self::server::Mode;
use self::server::Server;
use self::workload::{Overwrite, OverwriteConfig};

/// Length of every key (`key:%012d`).
const KEY_LEN: u64 = 16;

/// Where memory figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MemorySourceChoice {
    /// A memory cgroup per server when this process may create one, else procfs.
    Auto,
    /// A memory cgroup per server; fail if one cannot be created.
    Cgroup,
    /// Pss_Anon from smaps_rollup summed over the server and its children.
    Procfs,
}

/// What [`run`] measures under the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Operation {
    /// BGSAVE.
    Bgsave,
    /// BGREWRITEAOF, the servers running with `appendonly yes` (RDB preamble, the default) and
    /// no automatic rewrites.
    Bgrewriteaof,
    /// A full sync: a replica of the same kind (its own process, data dir and loopback port, not
    /// measured) attaches with REPLICAOF; diskless, `repl-diskless-sync-delay 0`.
    Fullsync,
}

impl Operation {
    /// The name in tables, CSVs and file names.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Bgsave => "bgsave",
            Operation::Bgrewriteaof => "bgrewriteaof",
            Operation::Fullsync => "fullsync",
        }
    }

    /// The command that starts it (sent to the replica for a full sync).
    fn command(self) -> &'static str {
        match self {
            Operation::Bgsave => "BGSAVE",
            Operation::Bgrewriteaof => "BGREWRITEAOF",
            Operation::Fullsync => "REPLICAOF",
        }
    }
}

/// Command-line options.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "snapshot-compare",
    about = "BGSAVE under a full-speed overwrite workload: forkless epoch vs fork mode vs \
             redis-server, side by side (memory, pause, latency, throughput, write speed)"
)]
pub struct Options {
    /// Dataset size in GiB (values; N = size / value size keys).
    #[arg(long, default_value_t = 1.0)]
    pub dataset_gib: f64,
    /// Dataset size in MiB (overrides --dataset-gib; for small test runs).
    #[arg(long)]
    pub dataset_mib: Option<f64>,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1000)]
    pub value_size: usize,
    /// Modes to run, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "epoch,fork,redis"
    )]
    pub modes: Vec<Mode>,
    /// What to measure: BGSAVE, BGREWRITEAOF (servers run with appendonly yes), or the full
    /// sync of a replica of the same kind (--save-timeout-secs caps it).
    #[arg(long, value_enum, default_value_t = Operation::Bgsave)]
    pub operation: Operation,
    /// The forkless server binary [default: forkless-server next to this executable].
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// The redis-server binary (the redis mode is skipped when it is not found).
    #[arg(long, default_value = "redis-server")]
    pub redis_bin: PathBuf,
    /// Results folder [default: target/snapshot-compare/<UTC timestamp>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the servers write their dumps (removed after each mode) [default: the temp dir].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seconds of workload without a snapshot, measured as the baseline.
    #[arg(long, default_value_t = 5.0)]
    pub duration_baseline_secs: f64,
    /// Seconds of workload before the baseline window starts (connections, allocator settle).
    #[arg(long, default_value_t = 2.0)]
    pub warmup_secs: f64,
    /// Seconds sampled after the save finished.
    #[arg(long, default_value_t = 1.0)]
    pub after_secs: f64,
    /// Overwrite connections in all.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 16)]
    pub pipeline: usize,
    /// Client threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Parallel connections for loading the dataset.
    #[arg(long, default_value_t = 4)]
    pub load_connections: usize,
    /// Sampling interval in milliseconds.
    #[arg(long, default_value_t = 15)]
    pub sample_ms: u64,
    /// Give up on a save after this many seconds.
    #[arg(long, default_value_t = 1800)]
    pub save_timeout_secs: u64,
    /// Run each server in a memory cgroup limited, after loading, to F x its memory then,
    /// without swap (needs root).
    #[arg(long)]
    pub memory_limit_factor: Option<f64>,
    /// Set vm.overcommit_memory=2 for the run and restore it afterwards (needs root; affects
    /// the whole machine while it runs).
    #[arg(long)]
    pub overcommit_strict: bool,
    /// Where memory figures come from.
    #[arg(long, value_enum, default_value_t = MemorySourceChoice::Auto)]
    pub memory_source: MemorySourceChoice,
    /// Seed for the values and the key choice.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// An extra option for the forkless server (epoch and fork modes), `name=value`, passed
    /// as `--name value`; repeatable. E.g. `--forkless-arg snapshot-max-retained-bytes=0`.
    #[arg(long = "forkless-arg", value_parser = parse_server_arg)]
    pub forkless_args: Vec<(String, String)>,
    /// The eviction scenario: run each server in a memory cgroup limited to this many MiB
    /// from its start (before loading), without swap (needs root).
    #[arg(long)]
    pub memory_limit_mib: Option<f64>,
    /// With --memory-limit-mib: give every server `maxmemory` = this fraction of the limit.
    #[arg(long)]
    pub maxmemory_fraction: Option<f64>,
    /// With --maxmemory-fraction: the `maxmemory-policy` every server gets.
    #[arg(long, default_value = "allkeys-lru")]
    pub maxmemory_policy: String,
    /// Fraction of the workload's SETs that insert a key never written before (the rest
    /// overwrite keys of the loaded range); with maxmemory this forces eviction.
    #[arg(long, default_value_t = 0.0)]
    pub insert_fraction: f64,
}

/// `name=value` into its two halves.
fn parse_server_arg(arg: &str) -> Result<(String, String), String> {
    arg.split_once('=')
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .ok_or_else(|| format!("expected name=value, got {arg:?}"))
}

impl Options {
    /// `maxmemory` in bytes for the eviction scenario (fraction x limit), when asked for.
    pub fn maxmemory_bytes(&self) -> Option<u64> {
        let limit = self.memory_limit_mib? * f64::from(1u32 << 20);
        Some((limit * self.maxmemory_fraction?) as u64)
    }

    /// Dataset size in bytes as asked for.
    pub fn dataset_request_bytes(&self) -> f64 {
        match self.dataset_mib {
            Some(mib) => mib * f64::from(1u32 << 20),
            None => self.dataset_gib * f64::from(1u32 << 30),
        }
    }

    /// Number of keys: requested dataset bytes / value size (at least 1).
    pub fn n_keys(&self) -> u64 {
        ((self.dataset_request_bytes() / self.value_size.max(1) as f64) as u64).max(1)
    }
}

/// What [`run`] wrote.
#[derive(Debug)]
pub struct RunOutput {
    /// The results folder.
    pub out_dir: PathBuf,
    /// One result per mode that ran.
    pub results: Vec<ModeResult>,
    /// The summary table that was printed.
    pub table: String,
}

/// Returns true if and only if the effective user id is 0 (from /proc/self/status).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// `program` if it names a file, else its first match on PATH.
pub fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Restores vm.overcommit_memory when dropped.
struct OvercommitGuard {
    previous: String,
}

const OVERCOMMIT: &str = "/proc/sys/vm/overcommit_memory";

impl OvercommitGuard {
    fn set_strict() -> anyhow::Result<OvercommitGuard> {
        let previous = fs::read_to_string(OVERCOMMIT).context("read vm.overcommit_memory")?;
        fs::write(OVERCOMMIT, "2").context("set vm.overcommit_memory=2")?;
        eprintln!(
            "snapshot-compare: vm.overcommit_memory=2 for this run (was {})",
            previous.trim()
        );
        Ok(OvercommitGuard { previous })
    }
}

impl Drop for OvercommitGuard {
    fn drop(&mut self) {
        match fs::write(OVERCOMMIT, self.previous.trim()) {
            Ok(()) => eprintln!(
                "snapshot-compare: vm.overcommit_memory restored to {}",
                self.previous.trim()
            ),
            Err(e) => eprintln!(
                "snapshot-compare: could NOT restore vm.overcommit_memory to {}: {e}",
                self.previous.trim()
            ),
        }
    }
}

/// Resolved settings shared by every mode.
struct Plan<'a> {
    opts: &'a Options,
    forkless_bin: PathBuf,
    redis_bin: PathBuf,
    out_dir: PathBuf,
    data_root: PathBuf,
    n_keys: u64,
    values: std::sync::Arc<Vec<Vec<u8>>>,
    /// Whether to try a memory cgroup per server.
    try_cgroup: bool,
    /// The limit factor, when it applies (root, cgroup).
    limit_factor: Option<f64>,
    /// The eviction scenario: (cgroup limit from the start, maxmemory) in bytes.
    eviction: Option<(u64, Option<u64>)>,
}

/// Runs every requested mode, writes the CSVs and the SVG, prints the table.
pub fn run(opts: &Options) -> anyhow::Result<RunOutput> {
    if opts.value_size == 0 || opts.clients == 0 || opts.pipeline == 0 || opts.sample_ms == 0 {
        bail!("--value-size, --clients, --pipeline and --sample-ms must be positive");
    }
    let exe_dir = std::env::current_exe()
        .context("locate this executable")?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut modes = Vec::new();
    for &mode in &opts.modes {
        if !modes.contains(&mode) {
            modes.push(mode);
        }
    }
    let redis_bin = find_program(&opts.redis_bin);
    if modes.contains(&Mode::Redis) && redis_bin.is_none() {
        eprintln!(
            "snapshot-compare: SKIPPING redis: {} not found (apt-get install redis-server)",
            opts.redis_bin.display()
        );
        modes.retain(|&m| m != Mode::Redis);
    }
    let forkless_bin = opts
        .server_bin
        .clone()
        .unwrap_or_else(|| exe_dir.join("forkless-server"));
    if modes.iter().any(|&m| m != Mode::Redis) && !forkless_bin.is_file() {
        bail!(
            "forkless server binary {} not found: build it with \
             `cargo build --release -p forkless-server`, or pass --server-bin",
            forkless_bin.display()
        );
    }
    if modes.is_empty() {
        bail!("no mode to run");
    }
    let out_dir = match &opts.out {
        Some(dir) => dir.clone(),
        None => {
            let unix = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            exe_dir
                .parent()
                .unwrap_or(&exe_dir)
                .join("snapshot-compare")
                .join(report::utc_timestamp(unix))
        }
    };
    fs::create_dir_all(&out_dir).with_context(|| format!("create {}", out_dir.display()))?;

    let root = is_root();
    let try_cgroup = match opts.memory_source {
        MemorySourceChoice::Procfs => false,
        MemorySourceChoice::Cgroup => true,
        MemorySourceChoice::Auto => root,
    };
    let limit_factor = match opts.memory_limit_factor {
        Some(_) if !root => {
            eprintln!(
                "snapshot-compare: SKIPPING --memory-limit-factor: it needs root (memory \
                 cgroups); running without a limit"
            );
            None
        }
        Some(_) if opts.memory_source == MemorySourceChoice::Procfs => {
            bail!("--memory-limit-factor needs a cgroup: drop --memory-source procfs")
        }
        Some(f) if f <= 0.0 => bail!("--memory-limit-factor must be positive"),
        other => other,
    };
    let eviction = eviction_scenario(opts, root)?;
    let _overcommit = if opts.overcommit_strict {
        if !root {
            bail!("--overcommit-strict needs root");
        }
        Some(OvercommitGuard::set_strict()?)
    } else {
        None
    };

    let plan = Plan {
        opts,
        forkless_bin,
        redis_bin: redis_bin.unwrap_or_else(|| opts.redis_bin.clone()),
        out_dir: out_dir.clone(),
        data_root: opts.data_dir.clone().unwrap_or_else(std::env::temp_dir),
        n_keys: opts.n_keys(),
        values: workload::value_pool(opts.value_size, opts.seed),
        try_cgroup: try_cgroup || eviction.is_some(),
        limit_factor,
        eviction,
    };
    eprintln!(
        "snapshot-compare: {} in modes {}, {} keys x {} B values, results in {}",
        opts.operation.name(),
        modes.iter().map(|m| m.name()).collect::<Vec<_>>().join(","),
        plan.n_keys,
        opts.value_size,
        out_dir.display()
    );

    let mut results = Vec::new();
    let mut all_samples = Vec::new();
    for mode in modes {
        let (result, samples) =
            run_mode(&plan, mode).with_context(|| format!("mode {}", mode.name()))?;
        let csv_path = out_dir.join(format!("{}.csv", mode.name()));
        let mut csv = BufWriter::new(File::create(&csv_path)?);
        report::write_series_csv(&mut csv, mode.name(), &samples)?;
        csv.flush()?;
        eprintln!(
            "snapshot-compare: {}: {}",
            mode.name(),
            result
                .outcome
                .as_ref()
                .map_or_else(|| "n/a".to_owned(), Outcome::describe)
        );
        results.push(result);
        all_samples.push((mode, samples));
    }

    let mut summary = BufWriter::new(File::create(out_dir.join("summary.csv"))?);
    report::write_summary_csv(&mut summary, &results)?;
    summary.flush()?;
    let series: Vec<plot::Series<'_>> = all_samples
        .iter()
        .map(|(mode, samples)| plot::Series {
            mode: mode.name(),
            samples,
            limits: plan
                .eviction
                .map_or((None, None), |(limit, maxmemory)| (Some(limit), maxmemory)),
        })
        .collect();
    let svg_name = match opts.operation {
        Operation::Bgsave => "snapshot-compare.svg".to_owned(),
        op => format!("snapshot-compare-{}.svg", op.name()),
    };
    plot::draw(&out_dir.join(svg_name), &series, opts.operation.command())?;
    let table = report::summary_table(&results);
    println!(
        "\n{} keys x {} B (clients {}, pipeline {}, threads {}); results in {}\n\n{table}",
        plan.n_keys,
        opts.value_size,
        opts.clients,
        opts.pipeline,
        opts.threads,
        out_dir.display()
    );
    Ok(RunOutput {
        out_dir,
        results,
        table,
    })
}

/// Checks the eviction scenario's options: (limit, maxmemory) in bytes when asked for.
fn eviction_scenario(opts: &Options, root: bool) -> anyhow::Result<Option<(u64, Option<u64>)>> {
    if !(0.0..=1.0).contains(&opts.insert_fraction) {
        bail!("--insert-fraction must be between 0 and 1");
    }
    let Some(limit_mib) = opts.memory_limit_mib else {
        if opts.maxmemory_fraction.is_some() {
            bail!("--maxmemory-fraction needs --memory-limit-mib");
        }
        return Ok(None);
    };
    if limit_mib <= 0.0 {
        bail!("--memory-limit-mib must be positive");
    }
    if opts.memory_limit_factor.is_some() {
        bail!("--memory-limit-mib and --memory-limit-factor exclude each other");
    }
    if !root || opts.memory_source == MemorySourceChoice::Procfs {
        bail!("--memory-limit-mib needs root and a memory cgroup");
    }
    if opts
        .maxmemory_fraction
        .is_some_and(|f| !(f > 0.0 && f <= 1.0))
    {
        bail!("--maxmemory-fraction must be in (0, 1]");
    }
    Ok(Some((
        (limit_mib * f64::from(1u32 << 20)) as u64,
        opts.maxmemory_bytes(),
    )))
}

/// The state of one mode's measurement loop.
struct Sampler<'a> {
    source: MemorySource,
    control: Conn,
    overwrite: &'a Overwrite,
    started: Instant,
    tick: Duration,
    next_tick: Instant,
    samples: Vec<Sample>,
    /// The latest INFO persistence reply (and INFO memory for a full sync).
    last_info: Info,
    /// What is measured.
    operation: Operation,
    /// A full sync's replica: a connection to it and its latest INFO replication.
    replica: Option<Conn>,
    replica_info: Info,
    /// Whether each sample also reads INFO memory (the eviction scenario).
    used_memory: bool,
}

/// Why a sampling loop stopped early.
enum Stop {
    ServerGone(String),
}

impl Sampler<'_> {
    /// Waits for the next tick, then takes one sample in `phase`; the interval's latencies go
    /// into `window`.
    fn sample(
        &mut self,
        phase: Phase,
        window: &mut Histogram<u64>,
        server: &mut Server,
    ) -> anyhow::Result<Result<(), Stop>> {
        let now = Instant::now();
        if self.next_tick > now {
            std::thread::sleep(self.next_tick - now);
        }
        self.next_tick = (self.next_tick + self.tick).max(Instant::now());
        let interval = self.overwrite.take_interval();
        let _ = window.add(&interval);
        if let Some(how) = server.exited() {
            return Ok(Err(Stop::ServerGone(how)));
        }
        let anon = match self.source.sample() {
            Ok(bytes) => bytes,
            Err(e) => match server.exited() {
                Some(how) => return Ok(Err(Stop::ServerGone(how))),
                None => return Err(e).context("sample memory"),
            },
        };
        let info = match sample_info(&mut self.control, self.operation, self.used_memory) {
            Ok(info) => info,
            Err(e) => {
                std::thread::sleep(Duration::from_millis(200));
                match server.exited() {
                    Some(how) => return Ok(Err(Stop::ServerGone(how))),
                    None => return Err(e).context("INFO persistence"),
                }
            }
        };
        if phase != Phase::Baseline
            && let Some(replica) = &mut self.replica
            && let Ok(text) = replica.info("replication")
        {
            // A replica that is busy loading may answer late or not at all: keep the last.
            self.replica_info = Info::parse(&text);
        }
        let in_progress = match self.operation {
            Operation::Bgsave => info.bgsave_in_progress(),
            Operation::Bgrewriteaof => aof_rewrite_active(&info),
            Operation::Fullsync => phase == Phase::Snapshot && !in_sync(&self.replica_info),
        };
        let repl_buffer_bytes = (self.operation == Operation::Fullsync).then(|| {
            let total = info.u64("mem_total_replication_buffers").unwrap_or(0);
            total.max(info.u64("mem_clients_slaves").unwrap_or(0))
        });
        self.samples.push(Sample {
            t_ms: i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX),
            phase,
            anon_bytes: anon,
            ops_in_interval: interval.len(),
            p99_us_in_interval: if interval.is_empty() {
                0
            } else {
                interval.value_at_quantile(0.99)
            },
            bgsave_in_progress: in_progress,
            retained_or_cow_bytes: info
                .u64("snapshot_retained_bytes")
                .or_else(|| info.u64("current_cow_size")),
            repl_buffer_bytes,
            used_memory: info.u64("used_memory").filter(|_| self.used_memory),
        });
        self.last_info = info;
        Ok(Ok(()))
    }
}

/// INFO persistence, plus INFO memory for a full sync (the replication buffers) or with
/// `used_memory` (the eviction scenario).
fn sample_info(conn: &mut Conn, operation: Operation, used_memory: bool) -> std::io::Result<Info> {
    let mut text = conn.info("persistence")?;
    if operation == Operation::Fullsync || used_memory {
        text.push('\n');
        text.push_str(&conn.info("memory")?);
    }
    Ok(Info::parse(&text))
}

/// Returns true if and only if INFO persistence says an AOF rewrite runs or waits to run.
fn aof_rewrite_active(info: &Info) -> bool {
    ["aof_rewrite_in_progress", "aof_rewrite_scheduled"]
        .iter()
        .any(|name| info.u64(name).is_some_and(|n| n != 0))
}

/// Returns true if and only if a replica's INFO replication says it is in sync with its
/// primary: `master_link_status:up` and `master_sync_in_progress:0`.
fn in_sync(replica_info: &Info) -> bool {
    replica_info.get("master_link_status") == Some("up")
        && replica_info.u64("master_sync_in_progress") == Some(0)
}

/// Whether the operation has ended, seen from the latest INFO: `None` while it runs, else
/// `Ok` or `Err(the server's word)`. `seen_running`: whether any sample saw it running so far
/// (updated); `count_before`: `rdb_saves` / `aof_rewrites` before it started.
fn operation_ended(
    operation: Operation,
    info: &Info,
    replica_info: &Info,
    seen_running: &mut bool,
    count_before: Option<u64>,
) -> Option<Result<(), String>> {
    let (running, status, count, error) = match operation {
        Operation::Bgsave => (
            info.bgsave_in_progress(),
            "rdb_last_bgsave_status",
            "rdb_saves",
            info.get("snapshot_last_error")
                .unwrap_or("rdb_last_bgsave_status:err"),
        ),
        Operation::Bgrewriteaof => (
            aof_rewrite_active(info),
            "aof_last_bgrewrite_status",
            "aof_rewrites",
            "aof_last_bgrewrite_status:err",
        ),
        Operation::Fullsync => return in_sync(replica_info).then_some(Ok(())),
    };
    *seen_running |= running;
    let status_err = info.get(status) == Some("err");
    let count_changed = count_before.is_some() && info.u64(count) != count_before;
    if running || !(*seen_running || count_changed || status_err) {
        return None;
    }
    Some(if status_err {
        Err(error.to_owned())
    } else {
        Ok(())
    })
}

/// A cgroup for `mode` when wanted and possible.
fn make_cgroup(plan: &Plan<'_>, mode: Mode) -> anyhow::Result<Option<Cgroup>> {
    if !plan.try_cgroup {
        return Ok(None);
    }
    let name = format!("snapshot-compare-{}-{}", std::process::id(), mode.name());
    match Cgroup::create(&name) {
        Ok(cgroup) => Ok(Some(cgroup)),
        Err(e) if plan.opts.memory_source == MemorySourceChoice::Cgroup => {
            Err(e).context("create a memory cgroup (--memory-source cgroup)")
        }
        Err(e) if plan.limit_factor.is_some() => {
            Err(e).context("create a memory cgroup (needed for --memory-limit-factor)")
        }
        Err(e) => {
            eprintln!("snapshot-compare: no memory cgroup ({e}); measuring through procfs");
            Ok(None)
        }
    }
}

/// Reads INFO persistence and stats into one map (Redis puts `latest_fork_usec` in stats).
fn full_info(conn: &mut Conn) -> std::io::Result<Info> {
    let mut text = conn.info("persistence")?;
    text.push('\n');
    text.push_str(&conn.info("stats")?);
    Ok(Info::parse(&text))
}

/// Runs one mode: start, load, baseline, BGSAVE, after-window; returns the result and series.
fn run_mode(plan: &Plan<'_>, mode: Mode) -> anyhow::Result<(ModeResult, Vec<Sample>)> {
    let opts = plan.opts;
    eprintln!("snapshot-compare: {}: starting", mode.name());
    let port = server::free_port()?;
    let data_dir = plan.data_root.join(format!(
        "snapshot-compare-{}-{}",
        std::process::id(),
        mode.name()
    ));
    fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let cgroup = match make_cgroup(plan, mode) {
        Ok(cgroup) => cgroup,
        Err(e) => {
            let _ = fs::remove_dir_all(&data_dir);
            return Err(e);
        }
    };
    let mut oom_before = None;
    if let Some((limit, _)) = plan.eviction {
        let set = match &cgroup {
            Some(cgroup) => cgroup
                .set_limit(limit)
                .with_context(|| format!("set the memory limit to {limit} bytes")),
            None => Err(anyhow::anyhow!("--memory-limit-mib: no memory cgroup")),
        };
        if let Err(e) = set {
            let _ = fs::remove_dir_all(&data_dir);
            return Err(e);
        }
        oom_before = cgroup.as_ref().map(|c| c.files().oom_kills().unwrap_or(0));
    }
    let mut command =
        server::server_command(mode, &plan.forkless_bin, &plan.redis_bin, port, &data_dir);
    if mode != Mode::Redis {
        for (name, value) in &plan.opts.forkless_args {
            command.args([format!("--{name}"), value.clone()]);
        }
    }
    if opts.operation == Operation::Bgrewriteaof {
        // Later options win (Redis's `--appendonly no` included); no automatic rewrite.
        command.args(["--appendonly", "yes", "--auto-aof-rewrite-percentage", "0"]);
    }
    if let Some((_, Some(maxmemory))) = plan.eviction {
        command.args(["--maxmemory", &maxmemory.to_string()]);
        command.args(["--maxmemory-policy", &opts.maxmemory_policy]);
    }
    let log_path = plan.out_dir.join(format!("{}-server.log", mode.name()));
    let mut server = match Server::start(command, port, data_dir.clone(), &log_path, cgroup) {
        Ok(server) => server,
        Err(e) => {
            let _ = fs::remove_dir_all(&data_dir);
            return Err(e);
        }
    };
    let source = match &server.cgroup {
        Some(cgroup) => MemorySource::Cgroup(cgroup.files().clone()),
        None => MemorySource::Procfs(server.pid()),
    };
    let mut result = ModeResult {
        mode: mode.name().to_owned(),
        operation: opts.operation.name().to_owned(),
        n_keys: plan.n_keys,
        dataset_bytes: plan.n_keys * (KEY_LEN + opts.value_size as u64),
        memory_source: source.describe().to_owned(),
        memory_limit_bytes: plan.eviction.map(|(limit, _)| limit),
        maxmemory_bytes: plan.eviction.and_then(|(_, maxmemory)| maxmemory),
        ..ModeResult::default()
    };

    let mut control = Conn::connect(server.addr, Duration::from_secs(60))?;
    let load_time = match workload::load(
        server.addr,
        plan.n_keys,
        &plan.values,
        opts.load_connections,
    ) {
        Ok(time) => time,
        Err(e) => match server.exited() {
            // The eviction scenario's limit can take the server while it loads: a result.
            Some(how) if plan.eviction.is_some() => {
                result.outcome = Some(Outcome::ServerGone(format!("while loading: {how}")));
                result.oom_kills = server.cgroup.as_ref().and_then(|c| c.files().oom_kills());
                return Ok((result, Vec::new()));
            }
            _ => return Err(e).context("load the dataset"),
        },
    };
    result.load_secs = load_time.as_secs_f64();
    let dbsize = control.dbsize()?;
    // With maxmemory the load itself evicts.
    if dbsize != plan.n_keys && plan.eviction.is_none_or(|(_, max)| max.is_none()) {
        bail!("DBSIZE is {dbsize} after loading {} keys", plan.n_keys);
    }
    std::thread::sleep(Duration::from_millis(500));
    result.loaded_anon = source.sample().context("sample memory")?;
    eprintln!(
        "snapshot-compare: {}: loaded {} keys in {:.1} s, anon memory {:.0} MiB",
        mode.name(),
        plan.n_keys,
        result.load_secs,
        result.loaded_anon as f64 / f64::from(1u32 << 20)
    );

    if let (Some(factor), Some(cgroup)) = (plan.limit_factor, &server.cgroup) {
        let usage = cgroup.files().usage_bytes()?;
        let limit = (usage as f64 * factor) as u64;
        cgroup
            .set_limit(limit)
            .with_context(|| format!("set the memory limit to {limit} bytes"))?;
        result.memory_limit_bytes = Some(limit);
        oom_before = Some(cgroup.files().oom_kills().unwrap_or(0));
        eprintln!(
            "snapshot-compare: {}: memory limit {:.0} MiB ({factor} x {:.0} MiB charged)",
            mode.name(),
            limit as f64 / f64::from(1u32 << 20),
            usage as f64 / f64::from(1u32 << 20)
        );
    }

    // A full sync's replica: started now, attached by REPLICAOF when the baseline is over.
    let mut replica = None;
    let mut replica_conn = None;
    if opts.operation == Operation::Fullsync {
        control
            .call(&[b"CONFIG", b"SET", b"repl-diskless-sync-delay", b"0"])
            .context("CONFIG SET repl-diskless-sync-delay 0")?;
        let started = start_replica(plan, mode)?;
        replica_conn = Some(Conn::connect(started.addr, Duration::from_secs(60))?);
        replica = Some(started);
    }

    let overwrite = Overwrite::start(
        server.addr,
        OverwriteConfig {
            n_keys: plan.n_keys,
            clients: opts.clients,
            pipeline: opts.pipeline,
            threads: opts.threads,
            seed: opts.seed ^ 0x5EED,
            insert_fraction: opts.insert_fraction,
        },
        &plan.values,
    )?;
    let tick = Duration::from_millis(opts.sample_ms);
    let mut sampler = Sampler {
        source,
        control,
        overwrite: &overwrite,
        started: Instant::now(),
        tick,
        next_tick: Instant::now(),
        samples: Vec::new(),
        last_info: Info::default(),
        operation: opts.operation,
        replica: replica_conn,
        replica_info: Info::default(),
        used_memory: result.maxmemory_bytes.is_some(),
    };
    let mut stop = None;

    // Warm-up: not recorded.
    let warmup_end = Instant::now() + Duration::from_secs_f64(opts.warmup_secs.max(0.0));
    while Instant::now() < warmup_end && stop.is_none() {
        std::thread::sleep(tick.min(warmup_end.saturating_duration_since(Instant::now())));
        if let Some(how) = server.exited() {
            stop = Some(Stop::ServerGone(how));
        }
    }
    let _ = overwrite.take_interval();
    sampler.next_tick = Instant::now();

    // Baseline window.
    let mut baseline = workload::latency_histogram();
    let baseline_start = Instant::now();
    let baseline_end =
        baseline_start + Duration::from_secs_f64(opts.duration_baseline_secs.max(0.0));
    while stop.is_none() && (Instant::now() < baseline_end || sampler.samples.is_empty()) {
        if let Err(s) = sampler.sample(Phase::Baseline, &mut baseline, &mut server)? {
            stop = Some(s);
        }
    }
    result.baseline = Window::from_histogram(&baseline, baseline_start.elapsed().as_secs_f64());
    result.pre_snapshot_anon = sampler.samples.last().map_or(0, |s| s.anon_bytes);
    let count_before = sampler.last_info.u64(match opts.operation {
        Operation::Bgrewriteaof => "aof_rewrites",
        _ => "rdb_saves",
    });
    let full_syncs_before = if opts.operation == Operation::Fullsync && stop.is_none() {
        Some(Info::parse(&sampler.control.info("stats")?).u64("sync_full"))
    } else {
        None
    };

    // The operation.
    let mut during = workload::latency_histogram();
    let bgsave_sent = Instant::now();
    let bgsave_offset_ms = i64::try_from(sampler.started.elapsed().as_millis()).unwrap_or(0);
    let _ = overwrite.take_interval(); // The rest of the baseline's last interval.
    let mut save_done = None;
    if stop.is_none() {
        let command = opts.operation.command();
        eprintln!("snapshot-compare: {}: {command}", mode.name());
        let reply = match (opts.operation, &mut sampler.replica) {
            (Operation::Fullsync, Some(replica)) => replica.call(&[
                b"REPLICAOF",
                b"127.0.0.1",
                server.addr.port().to_string().as_bytes(),
            ]),
            _ => sampler.control.call(&[command.as_bytes()]),
        };
        match reply {
            Ok(Reply::Error(text)) => result.outcome = Some(Outcome::BgsaveError(text)),
            Ok(_) => {
                result.bgsave_rtt_us =
                    Some(u64::try_from(bgsave_sent.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            Err(e) => match server.exited() {
                Some(how) => stop = Some(Stop::ServerGone(how)),
                None => return Err(e).context(command),
            },
        }
        sampler.next_tick = Instant::now();
        let deadline = bgsave_sent + Duration::from_secs(opts.save_timeout_secs);
        let mut seen_in_progress = false;
        while stop.is_none() && result.outcome.is_none() {
            if let Err(s) = sampler.sample(Phase::Snapshot, &mut during, &mut server)? {
                stop = Some(s);
                break;
            }
            if let Some(ended) = operation_ended(
                opts.operation,
                &sampler.last_info,
                &sampler.replica_info,
                &mut seen_in_progress,
                count_before,
            ) {
                save_done = Some(bgsave_sent.elapsed());
                result.outcome = Some(if let Err(error) = ended {
                    let oom_now = server.cgroup.as_ref().and_then(|c| c.files().oom_kills());
                    if oom_now
                        .zip(oom_before)
                        .is_some_and(|(now, before)| now > before)
                    {
                        Outcome::ChildOomKilled
                    } else {
                        Outcome::BgsaveError(error)
                    }
                } else {
                    Outcome::SaveOk
                });
            } else if Instant::now() >= deadline {
                result.outcome = Some(Outcome::TimedOut);
            }
        }
    }
    if let Some(conn) = sampler.replica.as_mut()
        && save_done.is_some()
    {
        result.replica_dbsize = conn.dbsize().ok();
    }
    if opts.operation == Operation::Fullsync {
        // The buffered writes, and the rest of the extra memory (the RDB side), at their peaks.
        let during_sync = sampler
            .samples
            .iter()
            .filter(|s| s.phase == Phase::Snapshot);
        let mut buffers_peak = 0;
        let mut rdb_side_peak = 0;
        for s in during_sync {
            let buffers = s.repl_buffer_bytes.unwrap_or(0);
            buffers_peak = buffers_peak.max(buffers);
            let extra = s.anon_bytes.saturating_sub(result.pre_snapshot_anon);
            rdb_side_peak = rdb_side_peak.max(extra.saturating_sub(buffers));
        }
        result.repl_buffer_peak = Some(buffers_peak);
        result.rdb_side_peak = Some(rdb_side_peak);
    }
    result.during = Window::from_histogram(
        &during,
        save_done
            .unwrap_or_else(|| bgsave_sent.elapsed())
            .as_secs_f64(),
    );
    result.snapshot_secs = save_done.map(|d| d.as_secs_f64());
    result.peak_anon = sampler
        .samples
        .iter()
        .filter(|s| s.phase == Phase::Snapshot)
        .map(|s| s.anon_bytes)
        .max()
        .unwrap_or(result.pre_snapshot_anon);
    if let Some(maxmemory) = result.maxmemory_bytes {
        let during_save = || {
            sampler
                .samples
                .iter()
                .filter(|s| s.phase == Phase::Snapshot)
        };
        result.peak_used_memory = during_save().filter_map(|s| s.used_memory).max();
        result.max_used_over_bound = during_save()
            .filter_map(|s| {
                let used = i64::try_from(s.used_memory?).ok()?;
                // Redis reports current_cow_size here: CoW pages are not in its used_memory.
                let retained = if mode == Mode::Redis {
                    0
                } else {
                    s.retained_or_cow_bytes.unwrap_or(0)
                };
                let bound = i64::try_from(maxmemory.saturating_add(retained)).ok()?;
                Some(used - bound)
            })
            .max();
    }

    // After the save.
    if stop.is_none() && save_done.is_some() {
        let mut after = workload::latency_histogram();
        let after_end = Instant::now() + Duration::from_secs_f64(opts.after_secs.max(0.0));
        while stop.is_none() && Instant::now() < after_end {
            if let Err(s) = sampler.sample(Phase::After, &mut after, &mut server)? {
                stop = Some(s);
            }
        }
        result.after_anon = sampler
            .samples
            .last()
            .filter(|s| s.phase == Phase::After)
            .map(|s| s.anon_bytes);
    }
    if opts.insert_fraction > 0.0 {
        eprintln!(
            "snapshot-compare: {}: {} keys inserted by the workload",
            mode.name(),
            overwrite.inserted()
        );
    }
    let (errors, first_error) = overwrite.errors();
    result.client_errors = errors;
    result.first_client_error = first_error;
    let mut samples = std::mem::take(&mut sampler.samples);
    let mut control = sampler.control;
    drop(overwrite);
    for sample in &mut samples {
        sample.t_ms -= bgsave_offset_ms;
    }

    result.oom_kills = server.cgroup.as_ref().and_then(|c| c.files().oom_kills());
    if let Some(Stop::ServerGone(how)) = stop {
        let oom = result
            .oom_kills
            .zip(oom_before)
            .is_some_and(|(now, before)| now > before);
        result.outcome = Some(Outcome::ServerGone(if oom {
            format!("{how}; the cgroup counted an OOM kill")
        } else {
            how
        }));
    } else {
        // Stopping the clients drained them; the server answers promptly now.
        let info = full_info(&mut control).context("final INFO")?;
        result.dbsize_after = control.dbsize().ok();
        fill_from_info(&mut result, mode, opts.operation, &info);
        if let Some(before) = full_syncs_before {
            result.full_syncs = info
                .u64("sync_full")
                .map(|after| after.saturating_sub(before.unwrap_or(0)));
        }
        let dump = match opts.operation {
            Operation::Bgrewriteaof => newest_aof_base(&server.data_dir).unwrap_or_default(),
            _ => server.data_dir.join("dump.rdb"),
        };
        if matches!(result.outcome, Some(Outcome::SaveOk)) && opts.operation != Operation::Fullsync
        {
            result.file_bytes = fs::metadata(&dump).ok().map(|m| m.len());
            if result.keys_saved.is_none() {
                result.keys_saved =
                    read_head(&dump).and_then(|head| info::rdb_resizedb_keys(&head));
            }
        }
    }
    drop(replica);
    drop(server);
    Ok((result, samples))
}

/// Fills in what INFO tells after the operation.
fn fill_from_info(result: &mut ModeResult, mode: Mode, operation: Operation, info: &Info) {
    if operation == Operation::Bgsave {
        result.bgsave_type = info.get("rdb_last_bgsave_type").map(str::to_owned);
    }
    result.evicted_keys = info.u64("evicted_keys");
    let fork_save = match result.bgsave_type.as_deref() {
        Some(kind) => kind == "fork",
        None if operation == Operation::Bgsave => mode == Mode::Redis,
        None => mode != Mode::Epoch,
    };
    let (first, second) = if fork_save {
        ("latest_fork_usec", "snapshot_last_cut_usec")
    } else {
        ("snapshot_last_cut_usec", "latest_fork_usec")
    };
    // Fall back to the other field when the preferred one is missing: forkless before fork
    // mode lands runs `--snapshot-mode fork` as an epoch save and has no latest_fork_usec.
    if let Some(us) = info.u64(first) {
        result.start_pause_us = Some(us);
        result.start_pause_field = Some(first);
    } else if let Some(us) = info.u64(second) {
        result.start_pause_us = Some(us);
        result.start_pause_field = Some(second);
    }
    if fork_save {
        result.cow_bytes = info.u64(if operation == Operation::Bgrewriteaof {
            "aof_last_cow_size"
        } else {
            "rdb_last_cow_size"
        });
    }
    result.retained_peak_bytes = info.u64("snapshot_peak_retained_bytes");
    if let (Some(budget), Some(hits)) = (
        info.u64("snapshot_retained_budget"),
        info.u64("snapshot_retained_budget_hits"),
    ) {
        result.retained_budget = Some((budget, hits));
    }
    // An AOF rewrite's keys come from its base file's header; a full sync's from the replica.
    if mode != Mode::Redis && operation == Operation::Bgsave {
        result.keys_saved = info.u64("snapshot_last_keys_saved");
    }
}

/// The newest `*.base.rdb` (the RDB preamble an AOF rewrite wrote) under `appendonlydir`.
fn newest_aof_base(data_dir: &Path) -> Option<PathBuf> {
    fs::read_dir(data_dir.join("appendonlydir"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".base.rdb"))
        .max_by_key(|entry| entry.metadata().and_then(|m| m.modified()).ok())
        .map(|entry| entry.path())
}

/// Starts `mode`'s replica for a full sync: its own data dir and loopback port, no cgroup (its
/// memory stays out of the primary's figures), log `<mode>-replica.log`.
fn start_replica(plan: &Plan<'_>, mode: Mode) -> anyhow::Result<Server> {
    let port = server::free_port()?;
    let data_dir = plan.data_root.join(format!(
        "snapshot-compare-{}-{}-replica",
        std::process::id(),
        mode.name()
    ));
    fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let mut command =
        server::server_command(mode, &plan.forkless_bin, &plan.redis_bin, port, &data_dir);
    if mode != Mode::Redis {
        for (name, value) in &plan.opts.forkless_args {
            command.args([format!("--{name}"), value.clone()]);
        }
    }
    let log_path = plan.out_dir.join(format!("{}-replica.log", mode.name()));
    match Server::start(command, port, data_dir.clone(), &log_path, None) {
        Ok(server) => Ok(server),
        Err(e) => {
            let _ = fs::remove_dir_all(&data_dir);
            Err(e).context("start the replica")
        }
    }
}

/// The first 64 KiB of a file.
fn read_head(path: &Path) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut head)
        .ok()?;
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn parses_options() {
        let opts = Options::try_parse_from([
            "snapshot-compare",
            "--dataset-gib",
            "4",
            "--value-size",
            "1000",
            "--modes",
            "fork,redis",
        ])
        .unwrap();
        assert_eq!(opts.modes, [Mode::Fork, Mode::Redis]);
        assert_eq!(opts.n_keys(), 4 * (1 << 30) / 1000);
        let small =
            Options::try_parse_from(["x", "--dataset-mib", "8", "--value-size", "100"]).unwrap();
        assert_eq!(small.n_keys(), 8 * (1 << 20) / 100);
        assert_eq!(small.modes, [Mode::Epoch, Mode::Fork, Mode::Redis]);
        assert_eq!((small.clients, small.pipeline, small.threads), (50, 16, 2));
        assert!(Options::try_parse_from(["x", "--modes", "nope"]).is_err());
        let extra = Options::try_parse_from([
            "x",
            "--forkless-arg",
            "snapshot-max-retained-bytes=8mb",
            "--forkless-arg",
            "snapshot-threads=1",
        ])
        .unwrap();
        assert_eq!(
            extra.forkless_args,
            [
                ("snapshot-max-retained-bytes".to_string(), "8mb".to_string()),
                ("snapshot-threads".to_string(), "1".to_string())
            ]
        );
        assert!(Options::try_parse_from(["x", "--forkless-arg", "no-equals"]).is_err());
    }

    #[test]
    fn parses_and_checks_the_eviction_scenario() {
        let opts = Options::try_parse_from([
            "x",
            "--memory-limit-mib",
            "2048",
            "--maxmemory-fraction",
            "0.9",
            "--insert-fraction",
            "0.5",
        ])
        .unwrap();
        assert_eq!(opts.maxmemory_policy, "allkeys-lru");
        let limit = 2048u64 << 20;
        assert_eq!(opts.maxmemory_bytes(), Some((limit as f64 * 0.9) as u64));
        assert_eq!(
            eviction_scenario(&opts, true).unwrap(),
            Some((limit, opts.maxmemory_bytes()))
        );
        // Needs root (a cgroup); a fraction needs a limit; fractions are checked.
        assert!(eviction_scenario(&opts, false).is_err());
        let no_limit = Options::try_parse_from(["x", "--maxmemory-fraction", "0.9"]).unwrap();
        assert!(eviction_scenario(&no_limit, true).is_err());
        let bad = Options::try_parse_from(["x", "--insert-fraction", "1.5"]).unwrap();
        assert!(eviction_scenario(&bad, true).is_err());
        let plain = Options::try_parse_from(["x"]).unwrap();
        assert_eq!(eviction_scenario(&plain, false).unwrap(), None);
        assert_eq!(plain.maxmemory_bytes(), None);
    }

    #[test]
    fn start_pause_falls_back_between_fields() {
        let epoch_info = Info::parse("snapshot_last_cut_usec:12\nrdb_last_cow_size:0\n");
        let mut r = ModeResult::default();
        fill_from_info(&mut r, Mode::Fork, Operation::Bgsave, &epoch_info);
        assert_eq!(r.start_pause_us, Some(12));
        assert_eq!(r.start_pause_field, Some("snapshot_last_cut_usec"));
        assert_eq!(r.cow_bytes, None);

        let fork_info = Info::parse(
            "rdb_last_bgsave_type:fork\nlatest_fork_usec:900\nsnapshot_last_cut_usec:0\n\
             rdb_last_cow_size:4096\nsnapshot_last_keys_saved:5\n",
        );
        let mut r = ModeResult::default();
        fill_from_info(&mut r, Mode::Fork, Operation::Bgsave, &fork_info);
        assert_eq!(r.start_pause_us, Some(900));
        assert_eq!(r.cow_bytes, Some(4096));
        assert_eq!(r.keys_saved, Some(5));

        let redis_info = Info::parse("latest_fork_usec:300\nrdb_last_cow_size:8192\n");
        let mut r = ModeResult::default();
        fill_from_info(&mut r, Mode::Redis, Operation::Bgsave, &redis_info);
        assert_eq!(r.start_pause_field, Some("latest_fork_usec"));
        assert_eq!(r.cow_bytes, Some(8192));
        assert_eq!(r.keys_saved, None);
    }

    #[test]
    fn parses_the_operation() {
        let default = Options::try_parse_from(["x"]).unwrap();
        assert_eq!(default.operation, Operation::Bgsave);
        for (arg, op) in [
            ("bgsave", Operation::Bgsave),
            ("bgrewriteaof", Operation::Bgrewriteaof),
            ("fullsync", Operation::Fullsync),
        ] {
            let opts = Options::try_parse_from(["x", "--operation", arg]).unwrap();
            assert_eq!(opts.operation, op);
            assert_eq!(op.name(), arg);
        }
        assert!(Options::try_parse_from(["x", "--operation", "save"]).is_err());
    }

    #[test]
    fn detects_the_end_of_each_operation() {
        let none = Info::default();
        let mut seen = false;
        let running = Info::parse("aof_rewrite_in_progress:0\naof_rewrite_scheduled:1\n");
        assert_eq!(
            operation_ended(Operation::Bgrewriteaof, &running, &none, &mut seen, Some(0)),
            None
        );
        assert!(seen);
        let done = Info::parse(
            "aof_rewrite_in_progress:0\naof_rewrite_scheduled:0\naof_last_bgrewrite_status:ok\n\
             aof_rewrites:1\n",
        );
        assert_eq!(
            operation_ended(Operation::Bgrewriteaof, &done, &none, &mut seen, Some(0)),
            Some(Ok(()))
        );
        // Finished before the first sample saw it: the counter moved.
        let mut unseen = false;
        assert_eq!(
            operation_ended(Operation::Bgrewriteaof, &done, &none, &mut unseen, Some(0)),
            Some(Ok(()))
        );
        let idle = Info::parse("aof_rewrite_in_progress:0\naof_rewrites:0\n");
        let mut unseen = false;
        assert_eq!(
            operation_ended(Operation::Bgrewriteaof, &idle, &none, &mut unseen, Some(0)),
            None
        );
        let failed = Info::parse("aof_rewrite_in_progress:0\naof_last_bgrewrite_status:err\n");
        assert!(matches!(
            operation_ended(Operation::Bgrewriteaof, &failed, &none, &mut seen, Some(0)),
            Some(Err(_))
        ));
        let saving = Info::parse("rdb_bgsave_in_progress:1\nrdb_saves:0\n");
        let mut seen = false;
        assert_eq!(
            operation_ended(Operation::Bgsave, &saving, &none, &mut seen, Some(0)),
            None
        );

        let loading = Info::parse("master_link_status:down\nmaster_sync_in_progress:1\n");
        let up = Info::parse("master_link_status:up\nmaster_sync_in_progress:0\n");
        let mut seen = false;
        assert_eq!(
            operation_ended(Operation::Fullsync, &none, &loading, &mut seen, None),
            None
        );
        assert_eq!(
            operation_ended(Operation::Fullsync, &none, &up, &mut seen, None),
            Some(Ok(()))
        );
    }

    #[test]
    fn finds_programs() {
        assert!(find_program(Path::new("sh")).is_some());
        assert!(find_program(Path::new("/nonexistent/redis-server")).is_none());
        assert!(find_program(Path::new("no-such-program-here")).is_none());
    }
}
