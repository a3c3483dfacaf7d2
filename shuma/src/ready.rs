//! Readiness waits: `wait-ready`, `ws create --wait-ready` and `run --wait-ready` each
//! send one `WaitReady` and read its one answer, `Ok` or a `NotReady` error.
//!
//! The daemon keeps the deadline: past `timeout_ms` it answers NotReady naming what is
//! still not ready, which says more than a client that gives up on its own. The
//! client's read timeout is only the backstop against a hung daemon.

use std::time::Duration;

use shuma_card::protocol::{ErrorCode, Request, Response};

use crate::client::{CliError, Client};
use crate::output;

/// How long past the deadline the client still waits for the daemon's verdict. The
/// daemon answers at the deadline itself; only a stopped or hung one uses this up.
const VERDICT_GRACE: Duration = Duration::from_secs(5);

/// What to wait for, and how long.
pub struct ReadyWait {
    pub workspace: String,
    /// A command's name, or a run's id in decimal; `None`: every command.
    pub command: Option<String>,
    /// `None`: until each command is ready or fails by its own `ready_timeout`.
    pub timeout_ms: Option<u64>,
}

/// The `timeout_ms` of a readiness wait: only an explicit, non-zero `--timeout` bounds
/// it. Without one, the cards' `ready_timeout`s bound each command already, and the
/// CLI's 30 s default for an answer would cut a slow but healthy start short.
pub fn ready_timeout(cli_timeout_ms: Option<u64>) -> Option<u64> {
    cli_timeout_ms.filter(|&ms| ms > 0)
}

/// Send `WaitReady` and wait for the verdict. `Ok(())` when ready; a NotReady answer
/// becomes a [`CliError::Refused`] with code NotReady (exit 4), its message (which ends
/// with the failed command's stderr) made safe for a terminal.
pub fn wait_ready(client: &mut Client, wait: ReadyWait) -> Result<(), CliError> {
    let limit = wait
        .timeout_ms
        .map(|ms| Duration::from_millis(ms) + VERDICT_GRACE);
    client.send(&Request::WaitReady {
        workspace: wait.workspace,
        command: wait.command,
        timeout_ms: wait.timeout_ms,
    })?;
    client.wait_at_most(limit)?;
    match client.recv_required()? {
        Response::Ok => Ok(()),
        Response::Error {
            code: ErrorCode::NotReady,
            message,
        } => Err(CliError::Refused {
            code: ErrorCode::NotReady,
            message: output::printable(message.trim_end()),
        }),
        Response::Error { code, message } => Err(CliError::Refused { code, message }),
        other => Err(client.unexpected("Ok", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ready_timeout_only_explicit_nonzero_bounds_the_wait() {
        assert_eq!(ready_timeout(None), None);
        assert_eq!(ready_timeout(Some(0)), None);
        assert_eq!(ready_timeout(Some(60_000)), Some(60_000));
    }
}
