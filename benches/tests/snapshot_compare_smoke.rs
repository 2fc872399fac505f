//! Smoke test of the `snapshot-compare` tool: a tiny dataset through every mode, end to end,
//! checking that it writes the summary CSV, one time-series CSV per mode and a well-formed SVG,
//! with sane numbers (the save completed, every key saved and still there, memory and
//! throughput measured). Never timing thresholds: this machine and CI are shared and noisy.
//!
//! The server is `snapshot-compare-server`, the forkless server binary built inside this package
//! (benches/src/bin/snapshot-compare-server.rs) so that Cargo builds it before this test and
//! `env!("CARGO_BIN_EXE_...")` names it: no dependence on what else the workspace built, and
//! no nested `cargo build`. The redis mode runs when `redis-server` is on PATH; with
//! `FORKLESS_REQUIRE_REDIS=1` (CI) a missing redis-server fails the test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const KEYS: u64 = 8 * (1 << 20) / 100;

fn redis_available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var_os("FORKLESS_REQUIRE_REDIS").is_none_or(|v| v != "1"),
            "FORKLESS_REQUIRE_REDIS=1 but redis-server is not installed"
        );
        eprintln!("SKIPPING the redis mode of snapshot_compare_smoke: redis-server not found");
    }
    found
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_csv(path: &Path) -> Vec<HashMap<String, String>> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header line").split(',').collect();
    lines
        .map(|line| {
            // The numeric columns this test reads never need quoting; quoted text columns may
            // hold commas, so split only as far as the header is long from the left.
            let cells: Vec<&str> = line.splitn(header.len(), ',').collect();
            header
                .iter()
                .zip(cells)
                .map(|(h, c)| ((*h).to_owned(), c.to_owned()))
                .collect()
        })
        .collect()
}

fn num(row: &HashMap<String, String>, column: &str) -> f64 {
    row.get(column)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("column {column} is not a number in {row:?}"))
}

#[test]
fn tiny_dataset_through_every_mode() {
    let mut modes = vec!["epoch", "fork"];
    if redis_available() {
        modes.push("redis");
    }
    let out = TempDir::new("snapshot-compare-smoke-out");
    let data = TempDir::new("snapshot-compare-smoke-data");
    let status = Command::new(env!("CARGO_BIN_EXE_snapshot-compare"))
        .args(["--dataset-mib", "8", "--value-size", "100"])
        .args([
            "--duration-baseline-secs",
            "1",
            "--warmup-secs",
            "0.2",
            "--after-secs",
            "0.2",
        ])
        .args([
            "--clients",
            "8",
            "--threads",
            "1",
            "--modes",
            &modes.join(","),
        ])
        .arg("--server-bin")
        .arg(env!("CARGO_BIN_EXE_snapshot-compare-server"))
        .arg("--out")
        .arg(&out.0)
        .arg("--data-dir")
        .arg(&data.0)
        .status()
        .expect("run snapshot-compare");
    assert!(status.success(), "snapshot-compare failed: {status}");

    let summary = read_csv(&out.0.join("summary.csv"));
    assert_eq!(summary.len(), modes.len());
    for (row, mode) in summary.iter().zip(&modes) {
        assert_eq!(row["mode"], *mode);
        assert_eq!(row["outcome"], "save ok", "{row:?}");
        assert_eq!(num(row, "keys"), KEYS as f64);
        assert_eq!(num(row, "keys_saved"), KEYS as f64, "{mode}: keys saved");
        assert_eq!(num(row, "dbsize_after"), KEYS as f64, "{mode}: keys after");
        assert!(num(row, "pre_snapshot_anon_bytes") > 0.0, "{mode}: memory");
        assert!(num(row, "peak_anon_bytes") > 0.0, "{mode}: memory");
        assert!(num(row, "snapshot_secs") > 0.0, "{mode}: snapshot time");
        assert!(
            num(row, "file_bytes") > KEYS as f64 * 100.0,
            "{mode}: file size"
        );
        assert!(num(row, "baseline_ops_per_sec") > 0.0, "{mode}: throughput");
        assert_eq!(num(row, "client_errors"), 0.0, "{mode}: client errors");

        let series = read_csv(&out.0.join(format!("{mode}.csv")));
        assert!(!series.is_empty());
        assert!(series.iter().all(|s| s["mode"] == *mode));
        assert!(series.iter().any(|s| s["phase"] == "snapshot"));
        let ops: f64 = series.iter().map(|s| num(s, "ops_in_interval")).sum();
        assert!(ops > 0.0, "{mode}: no requests recorded");
        assert!(series.iter().all(|s| num(s, "anon_bytes") > 0.0));
        assert!(out.0.join(format!("{mode}-server.log")).is_file());
    }

    let svg = std::fs::read_to_string(out.0.join("snapshot-compare.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: String = doc
        .descendants()
        .filter_map(|node| node.text())
        .collect::<Vec<_>>()
        .join(" ");
    for mode in &modes {
        assert!(
            texts.contains(&format!("{mode}: anon memory")),
            "plot title for {mode}"
        );
    }
    assert!(
        doc.descendants()
            .any(|node| node.tag_name().name() == "polyline")
    );
    // The servers' dump directories are gone.
    assert_eq!(std::fs::read_dir(&data.0).unwrap().count(), 0);
}

/// Runs snapshot-compare on the tiny dataset with `--operation operation` in `modes`, checks
/// what every operation writes, then runs `check` on the results folder (removed afterwards).
fn run_operation(operation: &str, modes: &[&str], check: impl Fn(&Path)) {
    let out = TempDir::new(&format!("snapshot-compare-smoke-{operation}-out"));
    let data = TempDir::new(&format!("snapshot-compare-smoke-{operation}-data"));
    let status = Command::new(env!("CARGO_BIN_EXE_snapshot-compare"))
        .args(["--operation", operation])
        .args(["--dataset-mib", "8", "--value-size", "100"])
        .args(["--duration-baseline-secs", "0.5", "--warmup-secs", "0.2"])
        .args(["--after-secs", "0.2", "--save-timeout-secs", "60"])
        .args([
            "--clients",
            "4",
            "--threads",
            "1",
            "--modes",
            &modes.join(","),
        ])
        .arg("--server-bin")
        .arg(env!("CARGO_BIN_EXE_snapshot-compare-server"))
        .arg("--out")
        .arg(&out.0)
        .arg("--data-dir")
        .arg(&data.0)
        .status()
        .expect("run snapshot-compare");
    assert!(status.success(), "snapshot-compare failed: {status}");
    let summary = read_csv(&out.0.join("summary.csv"));
    assert_eq!(summary.len(), modes.len());
    for (row, mode) in summary.iter().zip(modes) {
        assert_eq!(row["mode"], *mode);
        assert_eq!(row["operation"], operation);
        assert_eq!(row["outcome"], "save ok", "{row:?}");
        assert_eq!(num(row, "dbsize_after"), KEYS as f64, "{mode}: keys after");
        assert!(num(row, "snapshot_secs") > 0.0, "{mode}: operation time");
        assert!(num(row, "peak_anon_bytes") > 0.0, "{mode}: memory");
        assert_eq!(num(row, "client_errors"), 0.0, "{mode}: client errors");
        let series = read_csv(&out.0.join(format!("{mode}.csv")));
        assert!(series.iter().any(|s| s["bgsave_in_progress"] == "1"));
    }
    check(&out.0);
    let svg = std::fs::read_to_string(out.0.join(format!("snapshot-compare-{operation}.svg")))
        .expect("the plot");
    roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
    assert_eq!(std::fs::read_dir(&data.0).expect("the data dir").count(), 0);
}

fn small_modes() -> Vec<&'static str> {
    let mut modes = vec!["epoch"];
    if redis_available() {
        modes.push("redis");
    }
    modes
}

#[test]
fn tiny_dataset_bgrewriteaof() {
    run_operation("bgrewriteaof", &small_modes(), |out| {
        for row in read_csv(&out.join("summary.csv")) {
            // The rewrite's base file holds every key.
            assert_eq!(num(&row, "keys_saved"), KEYS as f64, "{row:?}");
            assert!(num(&row, "file_bytes") > KEYS as f64 * 100.0, "{row:?}");
        }
    });
}

#[test]
fn tiny_dataset_fullsync() {
    run_operation("fullsync", &small_modes(), |out| {
        for row in read_csv(&out.join("summary.csv")) {
            assert_eq!(num(&row, "replica_dbsize"), KEYS as f64, "{row:?}");
            assert!(num(&row, "full_syncs") >= 1.0, "{row:?}");
            let mode = &row["mode"];
            assert!(out.join(format!("{mode}-replica.log")).is_file());
            let series = read_csv(&out.join(format!("{mode}.csv")));
            assert!(series.iter().any(|s| !s["repl_buffer_bytes"].is_empty()));
        }
    });
}
