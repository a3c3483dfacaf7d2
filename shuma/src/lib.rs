//! `shuma`: the control CLI of arje. Parses the command line, runs one command over the
//! control socket, and turns the outcome into the exit codes documented in docs/CLI.md.
//! A library with one entry, [`run`], so that the `shuma` binary and the multi-call
//! `arje-init` (called as `shuma`) are the same CLI.

mod card;
mod cli;
mod client;
mod cmd_table;
mod commands;
mod output;
mod own_session;
mod pipeline;
mod ready;
mod stream;
mod top;
mod vsock;
mod ws;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::io::{self, Write};

use clap::Parser;

/// Runs the CLI on `args` (argv, its first word the program's name) and returns the
/// exit code. A usage error exits the process from inside (clap's, code 2).
pub fn run(args: impl IntoIterator<Item = OsString>) -> u8 {
    let cli = cli::Cli::parse_from(args);
    let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
    let result = commands::run(cli, &mut out, &mut err);
    // Flushed before the exit code is decided: a failed final flush is a failed write.
    let result = result.and_then(|code| out.flush().map(|()| code).map_err(Into::into));
    match result {
        Ok(code) => code,
        Err(e) => {
            let code = exit_code(&e);
            if code != 0 {
                let _ = writeln!(err, "shuma: {e:#}");
            }
            code
        }
    }
}

/// The exit code for an error: the CLI's own classification, 0 for a reader that went
/// away (`shuma logs ... | head`), 1 for anything else.
fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(cli_err) = e.downcast_ref::<client::CliError>() {
        return cli_err.exit_code();
    }
    if reader_gone(e) {
        0
    } else {
        1
    }
}

/// Did a write fail because the reader closed its end (EPIPE)? The io error may come
/// bare, or inside serde_json's error (`--json` output), anywhere in the chain.
fn reader_gone(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let kind = if let Some(io_err) = cause.downcast_ref::<io::Error>() {
            Some(io_err.kind())
        } else {
            cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
        };
        kind == Some(io::ErrorKind::BrokenPipe)
    })
}
