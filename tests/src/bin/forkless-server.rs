//! The server binary, built inside this crate so that tests can name it with
//! `env!("CARGO_BIN_EXE_forkless-server")`. Same entry point as `crates/server/src/main.rs`.

fn main() -> std::process::ExitCode {
    forkless_server::cli_main()
}
