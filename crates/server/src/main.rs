//! The `forkless-server` binary. All of the work is in the library so that the end-to-end test
//! crate can build the very same binary.

fn main() -> std::process::ExitCode {
    forkless_server::cli_main()
}
