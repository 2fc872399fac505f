//! `snapshot-compare`: BGSAVE (or BGREWRITEAOF, or a replica's full sync: `--operation`) under
//! a full-speed overwrite workload, forkless epoch vs fork mode vs redis-server. See
//! `forkless_benches::snapshot_compare` and docs/benchmarks.md.
//!
//!     cargo build --release -p forkless-server
//!     cargo run --release -p forkless-benches --bin snapshot-compare -- \
//!         --dataset-gib 4 --value-size 1000 [--operation bgsave|bgrewriteaof|fullsync]

use std::process::ExitCode;

use clap::Parser;
use forkless_benches::snapshot_compare::{Options, run};

fn main() -> ExitCode {
    let opts = Options::parse();
    match run(&opts) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("snapshot-compare: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
