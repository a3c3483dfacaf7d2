//! The `shuma` binary: the CLI of the `shuma` library (also reachable as the multi-call
//! `arje-init` called as `shuma`).

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(shuma::run(std::env::args_os()))
}
