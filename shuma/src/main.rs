//! `shuma`: the control CLI of arje. Parses the command line, runs one command over the
//! control socket, and turns the outcome into the exit codes documented in docs/CLI.md.

mod cli;
mod client;
mod commands;
mod output;
mod stream;
mod top;
mod ws;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
    let result = commands::run(cli, &mut out, &mut err);
    // Flushed before the exit code is decided: a failed final flush is a failed write.
    let result = result.and_then(|code| out.flush().map(|()| code).map_err(Into::into));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = exit_code(&e);
            if code != 0 {
                let _ = writeln!(err, "shuma: {e:#}");
            }
            ExitCode::from(code)
        }
    }
}

/// The exit code for an error: the CLI's own classification, 0 for a reader that went
/// away (`shuma logs ... | head`), 1 for anything else.
fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(cli_err) = e.downcast_ref::<client::CliError>() {
        return cli_err.exit_code();
    }
    match e.downcast_ref::<io::Error>() {
        Some(io_err) if io_err.kind() == io::ErrorKind::BrokenPipe => 0,
        _ => 1,
    }
}
