//! Criterion benchmarks for forkless live under `benches/`; this library is empty.
