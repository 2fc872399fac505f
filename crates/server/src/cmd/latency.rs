//! LATENCY: the latency monitor's events (`command`, `fast-command`, ... over
//! `latency-monitor-threshold` milliseconds, the last 160 seconds of samples each) and the
//! per-command latency histograms of LATENCY HISTOGRAM.
//!
//! Each command and each subcommand has a histogram of power-of-two buckets from 1024 ns up,
//! the buckets Redis reports from its HDR histogram (`hdr_iter_log_init(1024, 2)`); recording
//! is one relaxed increment. Events are kept only for commands over the threshold, under a
//! std mutex taken at most once per such command.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::meta::{Flags, Gate, KeySpec, flags};
use super::subcommands::{SUBCOMMANDS, help_reply, run_subcommand, subcommands_of};
use super::{Command, Ctx};
use crate::server::{Server, lock};

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "latency", arity: -2, flags: flags!(), keys: KeySpec::NONE, gate: Gate::Shared, categories: &["slow"], summary: "A container for latency diagnostics commands", since: "2.8.13", group: "server", handler: latency },
];

/// Redis's `LATENCY_TS_LEN`: samples kept per event, one per second at most.
const SAMPLES: usize = 160;
/// Histogram buckets: bucket k counts durations up to 1024 << k nanoseconds.
const BUCKETS: usize = 44;

/// One command's latency histogram.
#[derive(Debug)]
struct Histogram([AtomicU64; BUCKETS]);

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl Histogram {
    fn record(&self, duration_us: u64) {
        let ns = duration_us.saturating_mul(1000).max(1);
        // The smallest k with ns <= 1024 << k.
        let k = (ns - 1)
            .checked_ilog2()
            .map_or(0, |log| log.saturating_sub(9));
        let k = usize::try_from(k).unwrap_or(BUCKETS).min(BUCKETS - 1);
        if let Some(bucket) = self.0.get(k) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn calls(&self) -> u64 {
        self.0.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    fn reset(&self) {
        for bucket in &self.0 {
            bucket.store(0, Ordering::Relaxed);
        }
    }
}

/// One event's samples: (unix seconds, milliseconds), oldest first, and the all-time maximum.
#[derive(Debug, Default)]
struct Series {
    samples: Vec<(u64, u64)>,
    max: u64,
}

/// The latency monitor's state, shared by every connection.
#[derive(Debug)]
pub(crate) struct Latency {
    /// Per command (table index), then per subcommand (`table_len() + SUBCOMMANDS` index).
    histograms: Box<[Histogram]>,
    events: Mutex<BTreeMap<&'static str, Series>>,
}

impl Default for Latency {
    fn default() -> Latency {
        let n = super::table_len() + SUBCOMMANDS.len();
        Latency {
            histograms: (0..n).map(|_| Histogram::default()).collect(),
            events: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Latency {
    /// Records a command's duration in its histogram: `slot` from [`histogram_slot`].
    pub(crate) fn record_command(&self, slot: usize, duration_us: u64) {
        if let Some(histogram) = self.histograms.get(slot) {
            histogram.record(duration_us);
        }
    }

    /// Adds a sample of `event` if `latency_ms` reaches `latency-monitor-threshold` (Redis's
    /// `latencyAddSampleIfNeeded`; a threshold of 0 disables the monitor).
    pub(crate) fn add_sample_if_needed(
        &self,
        tunables: &crate::server::Tunables,
        event: &'static str,
        latency_ms: u64,
    ) {
        let threshold = tunables.latency_monitor_threshold.load(Ordering::Relaxed);
        if threshold == 0 || latency_ms < threshold {
            return;
        }
        let now = crate::server::unix_ms() / 1000;
        let mut events = lock(&self.events);
        let series = events.entry(event).or_default();
        series.max = series.max.max(latency_ms);
        // One sample per second: a second one in the same second keeps the larger.
        if let Some(last) = series.samples.last_mut().filter(|last| last.0 == now) {
            last.1 = last.1.max(latency_ms);
            return;
        }
        if series.samples.len() == SAMPLES {
            series.samples.remove(0);
        }
        series.samples.push((now, latency_ms));
    }

    /// Empties every histogram (CONFIG RESETSTAT).
    pub(crate) fn reset_histograms(&self) {
        for histogram in &*self.histograms {
            histogram.reset();
        }
    }
}

/// The histogram slot of command `idx`, or of its subcommand `argv[1]` for a container: None
/// for a container whose subcommand is unknown (Redis refuses it before it runs).
pub(crate) fn histogram_slot(idx: usize, container: bool, argv: &[Bytes]) -> Option<usize> {
    if !container {
        return Some(idx);
    }
    let sub = super::subcommands::subcommand_index(argv.first()?, argv.get(1)?)?;
    Some(super::table_len() + sub)
}

fn latency(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    run_subcommand(ctx, argv);
}

pub(super) fn latency_latest(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    let events = lock(&ctx.server.latency.events);
    ctx.out.array_len(events.len());
    for (name, series) in events.iter() {
        let (time, latest) = series.samples.last().copied().unwrap_or_default();
        ctx.out.array_len(4);
        ctx.out.bulk(name.as_bytes());
        ctx.out.int(i64::try_from(time).unwrap_or(i64::MAX));
        ctx.out.int(i64::try_from(latest).unwrap_or(i64::MAX));
        ctx.out.int(i64::try_from(series.max).unwrap_or(i64::MAX));
    }
}

pub(super) fn latency_history(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let events = lock(&ctx.server.latency.events);
    let samples = args
        .first()
        .and_then(|name| events.get(String::from_utf8_lossy(name).as_ref()))
        .map_or(&[][..], |series| &series.samples);
    ctx.out.array_len(samples.len());
    for (time, latency) in samples {
        ctx.out.array_len(2);
        ctx.out.int(i64::try_from(*time).unwrap_or(i64::MAX));
        ctx.out.int(i64::try_from(*latency).unwrap_or(i64::MAX));
    }
}

pub(super) fn latency_reset(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let mut events = lock(&ctx.server.latency.events);
    let resets = if args.is_empty() {
        let n = events.len();
        events.clear();
        n
    } else {
        args.iter()
            .filter(|name| {
                events
                    .remove(String::from_utf8_lossy(name).as_ref())
                    .is_some()
            })
            .count()
    };
    drop(events);
    ctx.out.int(i64::try_from(resets).unwrap_or(i64::MAX));
}

pub(super) fn latency_doctor(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    let events = lock(&ctx.server.latency.events);
    let mut report = String::new();
    if events.is_empty() {
        report.push_str(
            "Dave, no latency spike was observed during the lifetime of this Redis instance, \
             not in the slightest bit. I honestly think you ought to sleep tonight.\n",
        );
    } else {
        report.push_str(
            "Dave, I have observed latency spikes in this Redis instance. You don't mind \
             talking about it, do you Dave?\n\n",
        );
        for (n, (name, series)) in events.iter().enumerate() {
            let count = series.samples.len().max(1);
            let sum: u64 = series.samples.iter().map(|(_, ms)| ms).sum();
            let avg = sum / u64::try_from(count).unwrap_or(1);
            let _ = writeln!(
                report,
                "{}. {name}: {} latency spikes (average {avg}ms). Worst all time event {}ms.",
                n + 1,
                series.samples.len(),
                series.max
            );
        }
        report.push_str(
            "\nI have a few advices for you:\n\n- Check your system for other processes \
             competing for the CPU, and the commands in SLOWLOG GET: slow commands block \
             every client of their shard.\n",
        );
    }
    drop(events);
    ctx.out.verbatim(b"txt", report.as_bytes());
}

pub(super) fn latency_graph(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let name = args
        .first()
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .unwrap_or_default();
    let events = lock(&ctx.server.latency.events);
    let Some(series) = events.get(name.as_str()) else {
        drop(events);
        ctx.out
            .error(&format!("ERR No samples available for event '{name}'"));
        return;
    };
    let high = series.samples.iter().map(|(_, ms)| *ms).max().unwrap_or(0);
    let low = series.samples.iter().map(|(_, ms)| *ms).min().unwrap_or(0);
    let mut graph = format!(
        "{name} - high {high} ms, low {low} ms (all time high {} ms)\n{}\n",
        series.max,
        "-".repeat(80)
    );
    // Four rows of bars, the tallest sample reaching the top row.
    let rows = 4u64;
    for row in (1..=rows).rev() {
        for (_, ms) in &series.samples {
            let height = if high == 0 {
                0
            } else {
                (ms * rows).div_ceil(high)
            };
            graph.push(if height >= row { '#' } else { ' ' });
        }
        graph.push('\n');
    }
    drop(events);
    ctx.out.verbatim(b"txt", graph.as_bytes());
}

/// Writes one command's `calls` and `histogram_usec` map, as Redis's `fillCommandCDF`.
fn write_histogram(ctx: &mut Ctx<'_>, histogram: &Histogram) {
    let counts: Vec<u64> = histogram
        .0
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    let calls: u64 = counts.iter().sum();
    ctx.out.map_len(2);
    ctx.out.bulk(b"calls");
    ctx.out.int(i64::try_from(calls).unwrap_or(i64::MAX));
    ctx.out.bulk(b"histogram_usec");
    let mut cumulative = 0u64;
    let mut points = Vec::new();
    for (k, count) in counts.iter().enumerate() {
        if *count > 0 {
            cumulative += count;
            let micros = (1024u64 << k) / 1000;
            points.push((micros, cumulative));
        }
    }
    ctx.out.map_len(points.len());
    for (micros, cumulative) in points {
        ctx.out.int(i64::try_from(micros).unwrap_or(i64::MAX));
        ctx.out.int(i64::try_from(cumulative).unwrap_or(i64::MAX));
    }
}

/// The (full name, histogram slot) of every command and subcommand a LATENCY HISTOGRAM
/// argument names: a command, a container's subcommands, or `container|sub`.
fn named_slots(name: &[u8]) -> Vec<(&'static str, usize)> {
    let text = String::from_utf8_lossy(name).to_ascii_lowercase();
    if let Some((container, sub)) = text.split_once('|') {
        return super::subcommands::subcommand_index(container.as_bytes(), sub.as_bytes())
            .and_then(|idx| {
                SUBCOMMANDS
                    .get(idx)
                    .map(|row| (row.name, super::table_len() + idx))
            })
            .into_iter()
            .collect();
    }
    let Some((idx, command)) = super::lookup(name) else {
        return Vec::new();
    };
    let mut slots = vec![(command.name, idx)];
    for sub in subcommands_of(command.name) {
        if let Some(sub_idx) = SUBCOMMANDS.iter().position(|row| row.name == sub.name) {
            slots.push((sub.name, super::table_len() + sub_idx));
        }
    }
    slots
}

pub(super) fn latency_histogram(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let server: &Server = ctx.server;
    let slots: Vec<(&'static str, usize)> = if args.is_empty() {
        super::all_commands()
            .iter()
            .enumerate()
            .map(|(idx, command)| (command.name, idx))
            .chain(
                SUBCOMMANDS
                    .iter()
                    .enumerate()
                    .map(|(idx, sub)| (sub.name, super::table_len() + idx)),
            )
            .collect()
    } else {
        args.iter().flat_map(|name| named_slots(name)).collect()
    };
    let with_data: Vec<(&'static str, &Histogram)> = slots
        .into_iter()
        .filter_map(|(name, slot)| {
            server
                .latency
                .histograms
                .get(slot)
                .filter(|h| h.calls() > 0)
                .map(|h| (name, h))
        })
        .collect();
    ctx.out.map_len(with_data.len());
    for (name, histogram) in with_data {
        ctx.out.bulk(name.as_bytes());
        write_histogram(ctx, histogram);
    }
}

pub(super) fn latency_help(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    help_reply(
        ctx.out,
        "LATENCY",
        &[
            "DOCTOR",
            "    Return a human readable latency analysis report.",
            "GRAPH <event>",
            "    Return an ASCII latency graph for the <event> class.",
            "HISTORY <event>",
            "    Return time-latency samples for the <event> class.",
            "LATEST",
            "    Return the latest latency samples for all events.",
            "RESET [<event> ...]",
            "    Reset latency data of one or more <event> classes.",
            "    (default: reset all data for all event classes)",
            "HISTOGRAM [COMMAND ...]",
            "    Return a cumulative distribution of latencies in the format of a histogram \
             for the specified command names.",
            "    If no commands are specified then all histograms are replied.",
            "HELP",
            "    Print this help.",
        ],
    );
}

/// The latency event a command's duration counts toward, as Redis's `call()` names it.
pub(crate) fn event_of(command: &Command) -> &'static str {
    if command.has_flag(Flags::FAST) {
        "fast-command"
    } else {
        "command"
    }
}
