//! Benchmarks for forkless.
//!
//! # Layout
//! - `benches/*.rs`: criterion micro-benchmarks (RESP decode, keyspace GET/SET).
//! - [`snapshot_compare`]: the `snapshot-compare` macro-benchmark, which runs forkless in epoch
//!   and fork mode and Debian's redis-server side by side through one BGSAVE under a
//!   full-speed overwrite workload (binary: `src/bin/snapshot-compare.rs`).

pub mod snapshot_compare;
