//! The forkless server binary, built inside `forkless-benches` so that the snapshot-compare
//! smoke test can name it with `env!("CARGO_BIN_EXE_snapshot-compare-server")`. Same entry point
//! as `crates/server/src/main.rs`.

fn main() -> std::process::ExitCode {
    forkless_server::cli_main()
}
