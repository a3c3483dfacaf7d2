//! Commands whose answer comes as several frames: `logs` and `events`.
//!
//! Without `--follow` the daemon ends the listing with `Response::End`. With it, frames
//! keep coming until the user interrupts shuma or the daemon closes the connection; a
//! clean close is a normal end (exit 0), a close halfway through a frame is an error.

use std::io::Write;

use anyhow::Result;
use shuma_card::protocol::{Request, Response, Stream};

use crate::cli::{LogsArgs, StreamArg};
use crate::client::{CliError, Client};
use crate::commands::Ctx;
use crate::output;

pub fn logs(client: &mut Client, ctx: &mut Ctx, args: LogsArgs) -> Result<u8> {
    let stream = match args.stream {
        StreamArg::Out => Stream::Stdout,
        StreamArg::Err => Stream::Stderr,
        StreamArg::Both => Stream::Both,
    };
    client.send(&Request::Logs {
        workspace: args.workspace,
        command: args.command,
        stream,
        follow: args.follow,
    })?;
    if args.follow {
        client.wait_without_timeout()?;
    }
    while let Some(resp) = next(client, args.follow)? {
        match resp {
            Response::Log {
                stream: chunk_stream,
                data,
                dropped,
            } => {
                if dropped > 0 {
                    writeln!(ctx.err, "[{dropped} bytes dropped]")?;
                }
                // Asked for both, each stream goes to its own descriptor so `2>` still
                // separates them; asked for one, it goes to stdout to be piped.
                let to: &mut dyn Write = if stream == Stream::Both && chunk_stream == Stream::Stderr
                {
                    ctx.err
                } else {
                    ctx.out
                };
                to.write_all(&data)?;
                // Flushed per chunk so a follower sees output as it comes.
                to.flush()?;
            }
            Response::End => break,
            other => return Err(client.unexpected("Log", &other).into()),
        }
    }
    Ok(0)
}

/// Which events `shuma events` prints: applied to what the daemon sends, from memory or
/// from its journal on disk alike.
#[derive(Debug, Default)]
pub struct EventFilter {
    /// Only events at or after this wall-clock time (ms since the epoch).
    since_unix_ms: Option<u64>,
    workspace: Option<String>,
}

impl EventFilter {
    /// `since_ms`: how far back from now.
    pub fn new(since_ms: Option<u64>, workspace: Option<String>) -> EventFilter {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        EventFilter {
            since_unix_ms: since_ms.map(|ms| now.saturating_sub(ms)),
            workspace,
        }
    }

    pub fn keeps(&self, e: &shuma_card::Event) -> bool {
        let recent = self.since_unix_ms.map_or(true, |t| e.unix_ms >= t);
        let about = self
            .workspace
            .as_deref()
            .map_or(true, |w| e.kind.workspace() == Some(w));
        recent && about
    }
}

pub fn events(
    client: &mut Client,
    ctx: &mut Ctx,
    after: Option<u64>,
    follow: bool,
    filter: &EventFilter,
) -> Result<u8> {
    client.send(&Request::Events { after, follow })?;
    if follow {
        client.wait_without_timeout()?;
    }
    while let Some(resp) = next(client, follow)? {
        match resp {
            Response::Events(batch) => {
                for event in batch.iter().filter(|e| filter.keeps(e)) {
                    if ctx.json {
                        output::write_json_line(ctx.out, event)?;
                    } else {
                        // A text of several lines (a stderr tail in `not ready: ...`)
                        // continues under the text column, so each event still starts
                        // one line of its own with its id.
                        let head =
                            format!("{}  {}  ", event.id, output::format_unix_ms(event.unix_ms));
                        let text = output::continued(&event.kind.to_string(), head.len());
                        writeln!(ctx.out, "{head}{text}")?;
                    }
                }
                ctx.out.flush()?;
            }
            Response::End => break,
            other => return Err(client.unexpected("Events", &other).into()),
        }
    }
    Ok(0)
}

/// The next frame of a listing. `None` ends it: only a follower may see the daemon
/// close the connection; a non-follow listing must end with `End`.
fn next(client: &mut Client, follow: bool) -> Result<Option<Response>, CliError> {
    let resp = if follow {
        client.recv()?
    } else {
        Some(client.recv_required()?)
    };
    match resp {
        Some(Response::Error { code, message }) => Err(CliError::Refused { code, message }),
        other => Ok(other),
    }
}
