//! INFO: Redis 7.0's sections, field names and field order, so that dashboards and exporters
//! written for Redis work unchanged.
//!
//! Each section is a function that appends `name:value\r\n` lines. A field appears only when
//! forkless has an honest value for it: a figure that is always zero because the feature does
//! not exist here (replication, eviction, AOF) is reported as Redis reports it with the feature
//! off; a figure forkless does not measure (allocator internals, latency percentiles) is left
//! out rather than invented.
//!
//! # Differences from Redis 7.0
//! - `used_memory` is what the counting allocator handed out (`allocator.rs`: glibc's chunk
//!   sizes of Rust's allocations, exact up to 4 KiB per thread); allocations C code makes
//!   through `malloc` directly (Lua, zstd) show only in `allocator_*` (glibc's `mallinfo2`).
//!   `# Memory` adds `mem_snapshot_retained` (versions a running snapshot retains, also in
//!   `mem_not_counted_for_evict`, see `evict.rs`).
//! - `instantaneous_ops_per_sec` and the `_kbps` rates are computed from counter samples taken
//!   at least 100 ms apart at each INFO (and by [`sample_rates`], which a periodic task may
//!   call): the rate over the last second or, when samples are sparser, since the previous one.
//! - There is no `# Latencystats` section; commandstats counts calls per
//!   top-level command (`cmdstat_config`, not `cmdstat_config|get`).
//! - `# Persistence` comes from `persistence::info_section`, which adds forkless's
//!   `snapshot_*` fields after Redis's.

use std::collections::VecDeque;
use std::fmt::{Display, Write as _};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cmd;
use crate::server::{Server, lock, unix_us};

/// The Redis version forkless reports, so clients enable the features it implements.
pub(crate) const REDIS_VERSION: &str = "7.0.15";

/// Linux reports CPU times in clock ticks of `USER_HZ`, which is 100 on every architecture the
/// kernel's user ABI supports (`sysconf(_SC_CLK_TCK)`, which would need unsafe code here).
const CLOCK_TICKS_PER_SEC: u64 = 100;

/// The sections `INFO` and `INFO default` show, in output order.
const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
    "keyspace",
];

/// Every section, in output order (`INFO all` / `INFO everything`).
const ALL_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "commandstats",
    "errorstats",
    "cluster",
    "keyspace",
];

/// Keys removed by FLUSHDB/FLUSHALL ASYNC that a background thread has not freed yet, and keys
/// freed that way since start (`lazyfree_pending_objects`, `lazyfreed_objects`).
pub(crate) static LAZYFREE_PENDING: AtomicU64 = AtomicU64::new(0);
pub(crate) static LAZYFREED: AtomicU64 = AtomicU64::new(0);

/// `expired_keys` counts from storage's own counter, which never resets; CONFIG RESETSTAT
/// records its value here and INFO reports the difference.
static EXPIRED_KEYS_AT_RESET: AtomicU64 = AtomicU64::new(0);

/// The INFO reply text for `args` (the section names after `INFO`; none means `default`).
/// Unknown sections are ignored, so asking only for unknown ones gives an empty string.
pub(crate) fn render(server: &Server, args: &[Bytes], now_ms: u64) -> String {
    let wanted = wanted_sections(args);
    let mut text = String::new();
    for section in ALL_SECTIONS.iter().filter(|name| wanted.contains(name)) {
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        match *section {
            "server" => server_section(server, &mut text),
            "clients" => clients_section(server, &mut text),
            "memory" => memory_section(server, &mut text),
            "persistence" => persistence_section(server, &mut text),
            "stats" => stats_section(server, &mut text),
            "replication" => crate::replication::info_section(server, &mut text),
            "cpu" => cpu_section(&mut text),
            "modules" => text.push_str("# Modules\r\n"),
            "commandstats" => commandstats_section(server, &mut text),
            "errorstats" => {
                text.push_str("# Errorstats\r\n");
                server.stats.errors.render(&mut text);
            }
            "cluster" => {
                text.push_str("# Cluster\r\n");
                field(&mut text, "cluster_enabled", 0);
            }
            "keyspace" => keyspace_section(server, &mut text, now_ms),
            _ => {}
        }
    }
    text
}

/// The sections selected by INFO's arguments, as Redis 7.0's `genInfoSectionDict`: names are
/// case-insensitive, `default`, `all` and `everything` expand, `module_list` is `modules`.
fn wanted_sections(args: &[Bytes]) -> Vec<&'static str> {
    if args.is_empty() {
        return DEFAULT_SECTIONS.to_vec();
    }
    let mut wanted = Vec::new();
    for arg in args {
        let name = String::from_utf8_lossy(arg).to_ascii_lowercase();
        match name.as_str() {
            "default" => wanted.extend_from_slice(DEFAULT_SECTIONS),
            "all" | "everything" => wanted.extend_from_slice(ALL_SECTIONS),
            "module_list" => wanted.push("modules"),
            _ => wanted.extend(ALL_SECTIONS.iter().find(|section| **section == name)),
        }
    }
    wanted
}

/// Appends one `name:value` line.
fn field(text: &mut String, name: &str, value: impl Display) {
    let _ = write!(text, "{name}:{value}\r\n");
}

fn server_section(server: &Server, text: &mut String) {
    let config = server.config();
    let uptime = server.started.elapsed().as_secs();
    let port = lock(&server.local_addr).map_or(config.port, |addr| addr.port());
    text.push_str("# Server\r\n");
    field(text, "redis_version", REDIS_VERSION);
    field(text, "redis_git_sha1", "00000000");
    field(text, "redis_git_dirty", 0);
    field(text, "redis_build_id", "0");
    field(text, "forkless_version", env!("CARGO_PKG_VERSION"));
    field(text, "redis_mode", "standalone");
    field(text, "os", os_name());
    field(text, "arch_bits", usize::BITS);
    field(text, "monotonic_clock", "POSIX clock_gettime");
    field(text, "multiplexing_api", "epoll");
    field(text, "atomicvar_api", "c11-builtin");
    field(text, "gcc_version", "0.0.0");
    field(text, "process_id", std::process::id());
    field(text, "process_supervised", "no");
    field(text, "run_id", &server.run_id);
    field(text, "tcp_port", port);
    field(text, "server_time_usec", unix_us());
    field(text, "uptime_in_seconds", uptime);
    field(text, "uptime_in_days", uptime / 86_400);
    field(text, "hz", config.hz);
    field(text, "configured_hz", config.hz);
    // Redis's LRU clock: seconds, wrapped at 24 bits.
    field(text, "lru_clock", (unix_us() / 1_000_000) & ((1 << 24) - 1));
    let executable = std::env::current_exe().map(|path| path.display().to_string());
    field(text, "executable", executable.unwrap_or_default());
    let config_file = config
        .config_file
        .as_ref()
        .map(|path| path.display().to_string());
    field(text, "config_file", config_file.unwrap_or_default());
    field(text, "io_threads_active", 0);
}

/// `uname -srm`, as Redis shows it.
fn os_name() -> String {
    let read = |path: &str| std::fs::read_to_string(path).map(|s| s.trim().to_string());
    let kind = read("/proc/sys/kernel/ostype").unwrap_or_else(|_| "Linux".to_string());
    let release = read("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{kind} {release} {}", std::env::consts::ARCH)
}

fn clients_section(server: &Server, text: &mut String) {
    text.push_str("# Clients\r\n");
    // Replicas' links are not clients here, as Redis counts them apart.
    field(
        text,
        "connected_clients",
        server
            .clients
            .len()
            .saturating_sub(server.replication.replica_count()),
    );
    field(text, "cluster_connections", 0);
    field(
        text,
        "maxclients",
        server.tunables.maxclients.load(Ordering::Relaxed),
    );
    // Clients held back by CLIENT PAUSE count as blocked, as Redis's postponed clients do.
    field(
        text,
        "blocked_clients",
        server.blocking.blocked_clients() + server.pause.n_waiting(),
    );
    field(text, "tracking_clients", server.tracking.counts().0);
}

fn memory_section(server: &Server, text: &mut String) {
    // The figures first: the /proc files read below would otherwise count in used_memory.
    let figures = crate::evict::figures(server);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = kib_field(&status, "VmRSS:");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total_system = kib_field(&meminfo, "MemTotal:");
    let used = figures.used;
    let allocator = figures.allocator;
    let config = server.config();
    text.push_str("# Memory\r\n");
    field(text, "used_memory", used);
    field(text, "used_memory_human", bytes_to_human(used));
    field(text, "used_memory_rss", rss);
    field(text, "used_memory_rss_human", bytes_to_human(rss));
    field(text, "used_memory_peak", figures.peak);
    field(text, "used_memory_peak_human", bytes_to_human(figures.peak));
    field(
        text,
        "used_memory_peak_perc",
        format!("{:.2}%", figures.peak_percent()),
    );
    field(text, "used_memory_overhead", figures.overhead);
    field(text, "used_memory_startup", figures.startup);
    field(text, "used_memory_dataset", figures.dataset);
    field(
        text,
        "used_memory_dataset_perc",
        format!("{:.2}%", figures.dataset_percent()),
    );
    field(text, "allocator_allocated", allocator.allocated);
    field(text, "allocator_active", allocator.active);
    field(text, "allocator_resident", allocator.resident);
    field(text, "total_system_memory", total_system);
    field(
        text,
        "total_system_memory_human",
        bytes_to_human(total_system),
    );
    crate::scripting::info_memory(server, text);
    field(text, "maxmemory", config.maxmemory);
    field(text, "maxmemory_human", bytes_to_human(config.maxmemory));
    field(text, "maxmemory_policy", config.maxmemory_policy.as_str());
    let ratio = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    };
    let signed = |a: u64, b: u64| i128::from(a) - i128::from(b);
    field(
        text,
        "allocator_frag_ratio",
        format!("{:.2}", ratio(allocator.active, allocator.allocated)),
    );
    field(
        text,
        "allocator_frag_bytes",
        allocator.active.saturating_sub(allocator.allocated),
    );
    field(
        text,
        "allocator_rss_ratio",
        format!("{:.2}", ratio(allocator.resident, allocator.active)),
    );
    field(
        text,
        "allocator_rss_bytes",
        signed(allocator.resident, allocator.active),
    );
    field(
        text,
        "rss_overhead_ratio",
        format!("{:.2}", ratio(rss, allocator.resident)),
    );
    field(text, "rss_overhead_bytes", signed(rss, allocator.resident));
    field(
        text,
        "mem_fragmentation_ratio",
        format!("{:.2}", ratio(rss, used)),
    );
    field(text, "mem_fragmentation_bytes", signed(rss, used));
    field(
        text,
        "mem_not_counted_for_evict",
        figures.not_counted_for_evict,
    );
    // The replication stream's buffer (backlog and replicas' pending output, one buffer as
    // Redis 7.0's) and the replicas' share of it.
    let repl_buffer = server.replication.mem_backlog();
    field(text, "mem_replication_backlog", repl_buffer);
    field(text, "mem_total_replication_buffers", repl_buffer);
    field(
        text,
        "mem_clients_slaves",
        server.replication.mem_clients_slaves(),
    );
    field(text, "mem_clients_normal", figures.clients_normal);
    field(text, "mem_cluster_links", 0);
    field(text, "mem_aof_buffer", figures.aof_buffer);
    field(text, "mem_snapshot_retained", figures.retained);
    field(text, "mem_allocator", "libc");
    field(text, "active_defrag_running", 0);
    field(
        text,
        "lazyfree_pending_objects",
        LAZYFREE_PENDING.load(Ordering::Relaxed),
    );
    field(text, "lazyfreed_objects", LAZYFREED.load(Ordering::Relaxed));
}

/// The process's resident set size in bytes (`VmRSS`), the figure INFO reports as
/// `used_memory`; 0 when /proc is unreadable.
pub(crate) fn rss_bytes() -> u64 {
    kib_field(
        &std::fs::read_to_string("/proc/self/status").unwrap_or_default(),
        "VmRSS:",
    )
}

/// A `Name:   123 kB` line of a /proc file, in bytes; 0 when absent.
fn kib_field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib.saturating_mul(1024))
}

/// Redis's `bytesToHuman`: `123B`, `1.50K`, `2.00M`, ... up to petabytes.
pub(crate) fn bytes_to_human(n: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (1 << 10, "K"),
        (1 << 20, "M"),
        (1 << 30, "G"),
        (1 << 40, "T"),
        (1 << 50, "P"),
    ];
    if n < 1024 {
        return format!("{n}B");
    }
    for (idx, (unit, suffix)) in UNITS.iter().enumerate() {
        let next = UNITS.get(idx + 1).map_or(u64::MAX, |(next, _)| *next);
        if n < next || idx == UNITS.len() - 1 {
            return format!("{:.2}{suffix}", n as f64 / *unit as f64);
        }
    }
    format!("{n}B")
}

/// The header, then the fields the snapshot machinery keeps (`persistence::info_section`).
fn persistence_section(server: &Server, text: &mut String) {
    text.push_str("# Persistence\r\n");
    crate::persistence::info_section(server, text);
}

fn stats_section(server: &Server, text: &mut String) {
    let stats = &server.stats;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let rates = sample_rates(server);
    let expired = server.keyspace.expired_keys();
    text.push_str("# Stats\r\n");
    field(
        text,
        "total_connections_received",
        load(&stats.total_connections_received),
    );
    field(
        text,
        "total_commands_processed",
        load(&stats.total_commands_processed),
    );
    field(
        text,
        "instantaneous_ops_per_sec",
        rates.ops_per_sec.round() as u64,
    );
    field(text, "total_net_input_bytes", load(&stats.net_input_bytes));
    field(
        text,
        "total_net_output_bytes",
        load(&stats.net_output_bytes),
    );
    field(text, "total_net_repl_input_bytes", 0);
    field(
        text,
        "total_net_repl_output_bytes",
        load(&server.replication.shared.net_output_bytes),
    );
    field(
        text,
        "instantaneous_input_kbps",
        format!("{:.2}", rates.input_kbps),
    );
    field(
        text,
        "instantaneous_output_kbps",
        format!("{:.2}", rates.output_kbps),
    );
    field(text, "instantaneous_input_repl_kbps", "0.00");
    field(text, "instantaneous_output_repl_kbps", "0.00");
    field(
        text,
        "rejected_connections",
        load(&stats.rejected_connections),
    );
    let repl = &server.replication.shared;
    field(text, "sync_full", load(&repl.sync_full));
    field(text, "sync_partial_ok", load(&repl.sync_partial_ok));
    field(text, "sync_partial_err", load(&repl.sync_partial_err));
    field(
        text,
        "expired_keys",
        expired.saturating_sub(load(&EXPIRED_KEYS_AT_RESET)),
    );
    field(text, "evicted_keys", load(&stats.evicted_keys));
    field(text, "evicted_clients", load(&stats.evicted_clients));
    field(text, "keyspace_hits", load(&stats.keyspace_hits));
    field(text, "keyspace_misses", load(&stats.keyspace_misses));
    let (channels, patterns, shard_channels) = server.pubsub.counts();
    field(text, "pubsub_channels", channels);
    field(text, "pubsub_patterns", patterns);
    field(text, "pubsubshard_channels", shard_channels);
    {
        let persistence = server.persistence.state();
        field(text, "latest_fork_usec", persistence.latest_fork_usec);
        field(text, "total_forks", persistence.total_forks);
    }
    field(
        text,
        "migrate_cached_sockets",
        server.migrate_sockets.count(),
    );
    let (_, tracking_keys, tracking_items, tracking_prefixes) = server.tracking.counts();
    field(text, "tracking_total_keys", tracking_keys);
    field(text, "tracking_total_items", tracking_items);
    field(text, "tracking_total_prefixes", tracking_prefixes);
    field(
        text,
        "unexpected_error_replies",
        load(&stats.unexpected_error_replies),
    );
    field(
        text,
        "total_error_replies",
        load(&stats.total_error_replies),
    );
}

fn cpu_section(text: &mut String) {
    let process = cpu_times(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default());
    let main_thread_stat = format!("/proc/self/task/{}/stat", std::process::id());
    let main_thread = cpu_times(&std::fs::read_to_string(main_thread_stat).unwrap_or_default());
    text.push_str("# CPU\r\n");
    field(text, "used_cpu_sys", seconds(process.system));
    field(text, "used_cpu_user", seconds(process.user));
    field(
        text,
        "used_cpu_sys_children",
        seconds(process.children_system),
    );
    field(
        text,
        "used_cpu_user_children",
        seconds(process.children_user),
    );
    field(
        text,
        "used_cpu_sys_main_thread",
        seconds(main_thread.system),
    );
    field(text, "used_cpu_user_main_thread", seconds(main_thread.user));
}

/// CPU times in clock ticks, from a `/proc/.../stat` line.
#[derive(Debug, Default, PartialEq, Eq)]
struct CpuTimes {
    user: u64,
    system: u64,
    children_user: u64,
    children_system: u64,
}

/// Parses `utime stime cutime cstime` (fields 14 to 17) of a stat line. The command name in
/// field 2 may hold spaces and parentheses, so fields are counted after its last `)`.
fn cpu_times(stat: &str) -> CpuTimes {
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // The first field after the name is field 3 (state), so field N is at index N - 3.
    let fields: Vec<u64> = after_name
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    match fields[..] {
        [user, system, children_user, children_system] => CpuTimes {
            user,
            system,
            children_user,
            children_system,
        },
        _ => CpuTimes::default(),
    }
}

/// Clock ticks as Redis prints seconds of CPU time (`%ld.%06ld`).
fn seconds(ticks: u64) -> String {
    let micros = ticks * (1_000_000 / CLOCK_TICKS_PER_SEC);
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

fn commandstats_section(server: &Server, text: &mut String) {
    text.push_str("# Commandstats\r\n");
    for (command, stats) in cmd::all_commands().iter().zip(server.command_stats.iter()) {
        let calls = stats.calls.load(Ordering::Relaxed);
        let rejected = stats.rejected_calls.load(Ordering::Relaxed);
        let failed = stats.failed_calls.load(Ordering::Relaxed);
        if calls == 0 && rejected == 0 && failed == 0 {
            continue;
        }
        let usec = stats.usec.load(Ordering::Relaxed);
        let per_call = if calls == 0 {
            0.0
        } else {
            usec as f64 / calls as f64
        };
        let _ = write!(
            text,
            "cmdstat_{}:calls={calls},usec={usec},usec_per_call={per_call:.2},\
             rejected_calls={rejected},failed_calls={failed}\r\n",
            command.name
        );
    }
}

fn keyspace_section(server: &Server, text: &mut String, now_ms: u64) {
    text.push_str("# Keyspace\r\n");
    for (idx, db) in server.keyspace.dbs().iter().enumerate() {
        let stats = db.stats(now_ms);
        if stats.keys > 0 {
            let _ = write!(
                text,
                "db{idx}:keys={},expires={},avg_ttl={}\r\n",
                stats.keys, stats.expires, stats.avg_ttl_ms
            );
        }
    }
}

/// CONFIG RESETSTAT: zeroes the INFO stats counters and the per-command statistics, as Redis's
/// `resetServerStats` and `resetCommandTableStats` do.
pub(crate) fn reset_stats(server: &Server) {
    let stats = &server.stats;
    for counter in [
        &stats.total_connections_received,
        &stats.total_commands_processed,
        &stats.rejected_connections,
        &stats.keyspace_hits,
        &stats.keyspace_misses,
        &stats.net_input_bytes,
        &stats.net_output_bytes,
        &stats.total_error_replies,
        &stats.unexpected_error_replies,
    ] {
        counter.store(0, Ordering::Relaxed);
    }
    stats.errors.reset();
    // As Redis's resetServerStats: the replication counters too.
    let replication = &server.replication.shared;
    for counter in [
        &replication.sync_full,
        &replication.sync_partial_ok,
        &replication.sync_partial_err,
        &replication.net_output_bytes,
    ] {
        counter.store(0, Ordering::Relaxed);
    }
    // As Redis's lazyfreeResetStats: the objects freed in the background count from zero.
    LAZYFREED.store(0, Ordering::Relaxed);
    for command in server.command_stats.iter() {
        command.calls.store(0, Ordering::Relaxed);
        command.usec.store(0, Ordering::Relaxed);
        command.rejected_calls.store(0, Ordering::Relaxed);
        command.failed_calls.store(0, Ordering::Relaxed);
    }
    EXPIRED_KEYS_AT_RESET.store(server.keyspace.expired_keys(), Ordering::Relaxed);
    server.stats.evicted_keys.store(0, Ordering::Relaxed);
    server.stats.evicted_clients.store(0, Ordering::Relaxed);
    {
        // As Redis's resetServerStats: stat_fork_time and stat_total_forks restart too.
        let mut persistence = server.persistence.state();
        persistence.latest_fork_usec = 0;
        persistence.total_forks = 0;
    }
    // The counters restart from zero now.
    *lock(&RATE_SAMPLES) = VecDeque::from([RateSample::zero(Instant::now())]);
}

/// One reading of the counters behind the instantaneous rates.
#[derive(Clone, Copy, Debug)]
struct RateSample {
    at: Instant,
    commands: u64,
    net_input: u64,
    net_output: u64,
}

impl RateSample {
    fn zero(at: Instant) -> RateSample {
        RateSample {
            at,
            commands: 0,
            net_input: 0,
            net_output: 0,
        }
    }
}

/// Recent samples, oldest first. A std mutex: taken by INFO (and a periodic sampler) only.
static RATE_SAMPLES: Mutex<VecDeque<RateSample>> = Mutex::new(VecDeque::new());

/// Samples are taken at least this far apart; rates are measured over about `RATE_WINDOW`.
const SAMPLE_SPACING: Duration = Duration::from_millis(100);
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Per-second rates for INFO stats.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Rates {
    pub(crate) ops_per_sec: f64,
    pub(crate) input_kbps: f64,
    pub(crate) output_kbps: f64,
}

/// Records a sample of the counters (if the last is at least 100 ms old) and returns the rates
/// since the newest sample at least a second old, or the oldest one kept when none is that
/// old. Safe to call from a periodic task to make the rates follow the last second exactly.
pub(crate) fn sample_rates(server: &Server) -> Rates {
    let now = RateSample {
        at: Instant::now(),
        commands: server
            .stats
            .total_commands_processed
            .load(Ordering::Relaxed),
        net_input: server.stats.net_input_bytes.load(Ordering::Relaxed),
        net_output: server.stats.net_output_bytes.load(Ordering::Relaxed),
    };
    let mut samples = lock(&RATE_SAMPLES);
    if samples.is_empty() {
        // The counters started at zero with the server.
        samples.push_back(RateSample::zero(server.started));
    }
    // Drop samples older than the newest one that already covers the window.
    while samples
        .get(1)
        .is_some_and(|next| now.at.duration_since(next.at) >= RATE_WINDOW)
    {
        samples.pop_front();
    }
    let base = samples.front().copied().unwrap_or(now);
    if samples
        .back()
        .is_none_or(|last| now.at.duration_since(last.at) >= SAMPLE_SPACING)
    {
        samples.push_back(now);
    }
    drop(samples);
    let elapsed = now.at.duration_since(base.at).as_secs_f64();
    if elapsed <= 0.0 {
        return Rates::default();
    }
    let per_sec = |now: u64, then: u64| now.saturating_sub(then) as f64 / elapsed;
    Rates {
        ops_per_sec: per_sec(now.commands, base.commands),
        input_kbps: per_sec(now.net_input, base.net_input) / 1024.0,
        output_kbps: per_sec(now.net_output, base.net_output) / 1024.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_to_human_matches_redis() {
        assert_eq!(bytes_to_human(0), "0B");
        assert_eq!(bytes_to_human(1023), "1023B");
        assert_eq!(bytes_to_human(1024), "1.00K");
        assert_eq!(bytes_to_human(916_280), "894.80K");
        assert_eq!(bytes_to_human(6_561_792), "6.26M");
        assert_eq!(bytes_to_human(25_276_502_016), "23.54G");
        assert_eq!(bytes_to_human(3 << 40), "3.00T");
        assert_eq!(bytes_to_human(5 << 50), "5.00P");
    }

    #[test]
    fn cpu_times_skip_a_command_name_with_spaces_and_parentheses() {
        let stat = "1234 (a b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 4 9 20 0 3 0";
        let times = cpu_times(stat);
        assert_eq!(
            times,
            CpuTimes {
                user: 250,
                system: 37,
                children_user: 4,
                children_system: 9
            }
        );
        assert_eq!(seconds(times.user), "2.500000");
        assert_eq!(seconds(times.system), "0.370000");
        assert_eq!(cpu_times("garbage"), CpuTimes::default());
    }

    #[test]
    fn sections_expand_like_redis() {
        let args = |words: &[&str]| -> Vec<Bytes> {
            words
                .iter()
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect()
        };
        assert_eq!(wanted_sections(&[]), DEFAULT_SECTIONS);
        assert_eq!(wanted_sections(&args(&["ALL"])), ALL_SECTIONS);
        assert_eq!(
            wanted_sections(&args(&["Server", "keyspace", "nope"])),
            ["server", "keyspace"]
        );
        assert_eq!(wanted_sections(&args(&["module_list"])), ["modules"]);
        assert!(wanted_sections(&args(&["bogus"])).is_empty());
    }

    #[test]
    fn kib_fields_are_bytes() {
        let status = "Name:\tx\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(kib_field(status, "VmRSS:"), 1024 * 1024);
        assert_eq!(kib_field(status, "VmHWM:"), 2048 * 1024);
        assert_eq!(kib_field(status, "VmSwap:"), 0);
    }
}
