//! Output: what a command's pipes bring goes into its rings and to the clients that
//! follow its logs.

use shuma_card::protocol::{Response, Stream};

use super::commands::Command;
use super::Runtime;
use crate::control::Follow;
use crate::ids::{CommandId, PipeId};

impl Runtime {
    /// Output is readable on a pipe: into the command's ring, and to its followers.
    pub(crate) fn on_log(&mut self, pipe: PipeId) {
        let Some(chunk) = self.capture.read(pipe) else {
            return;
        };
        let Some(cmd) = self.table.commands.get_mut(&chunk.command) else {
            return;
        };
        if chunk.eof {
            cmd.pipe_ids.retain(|p| *p != pipe);
        }
        let to_file = cmd.spec.log == shuma_card::spec::LogTarget::Ring;
        if to_file && !chunk.data.is_empty() {
            self.logfiles
                .write(&cmd.workspace, &cmd.spec.name, &chunk.data);
        }
        if to_file && chunk.eof && cmd.pipe_ids.is_empty() {
            // The run's output has ended: its log file is closed until the next.
            self.logfiles.forget(&cmd.workspace, &cmd.spec.name);
        }
        if chunk.data.is_empty() {
            return;
        }
        if chunk.is_err {
            &mut cmd.err
        } else {
            &mut cmd.out
        }
        .push(&chunk.data);
        self.ready_check_output(chunk.command, chunk.is_err, &chunk.data);
        self.push_logs(chunk.command);
    }

    /// Send followers of a command what they have not seen yet.
    fn push_logs(&mut self, cmd_id: CommandId) {
        let followers = self
            .server
            .followers(|f| matches!(f, Follow::Logs { command, .. } if *command == cmd_id));
        let Some(cmd) = self.table.commands.get(&cmd_id) else {
            return;
        };
        for conn_id in followers {
            let Some(conn) = self.server.conn_mut(conn_id) else {
                continue;
            };
            let Follow::Logs { out, err, .. } = conn.follow.clone() else {
                continue;
            };
            let (frames, next) = log_frames(cmd, out, err);
            for (frame, len) in frames {
                let frame = match frame {
                    Response::Log {
                        stream,
                        data,
                        dropped,
                    } => Response::Log {
                        stream,
                        data,
                        dropped: dropped + std::mem::take(&mut conn.dropped),
                    },
                    other => other,
                };
                conn.send_lossy(&frame, len);
            }
            conn.follow = Follow::Logs {
                command: cmd_id,
                out: next.0,
                err: next.1,
            };
            self.server.service(&self.reactor, conn_id);
        }
    }
}

/// Bytes of stdout and stderr a log reader has seen (`None`: that stream is not read).
pub(crate) type Cursors = (Option<u64>, Option<u64>);

/// The log frames a reader with cursors `out`/`err` (bytes of stdout/stderr already
/// seen; `None`: not read) has not seen, each with its data length, and the cursors after
/// them.
pub(crate) fn log_frames(
    cmd: &Command,
    out: Option<u64>,
    err: Option<u64>,
) -> (Vec<(Response, u64)>, Cursors) {
    let mut frames = Vec::new();
    let mut next = (out, err);
    for (cursor, ring, stream, slot) in [
        (out, &cmd.out, Stream::Stdout, &mut next.0),
        (err, &cmd.err, Stream::Stderr, &mut next.1),
    ] {
        let Some(from) = cursor else { continue };
        let (data, lost) = ring.read_from(from);
        if data.is_empty() && lost == 0 {
            continue;
        }
        let len = data.len() as u64;
        frames.push((
            Response::Log {
                stream,
                data,
                dropped: lost,
            },
            len,
        ));
        *slot = Some(ring.written());
    }
    (frames, next)
}
