//! Output capture: the read ends of the commands' stdout and stderr pipes. Owns those fds
//! (registered under `Token::Log`); what is read goes to the command's rings, which the
//! command owns, so `shuma logs` reads them after the pipe is gone.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use super::reactor::{Interest, Reactor};
use crate::ids::{CommandId, IdGen, PipeId};
use crate::token::Token;

/// Most bytes read from one pipe per loop turn, so one chatty command cannot starve the
/// loop.
const READ_PER_TURN: usize = 256 * 1024;

struct Pipe {
    command: CommandId,
    is_err: bool,
    fd: OwnedFd,
}

/// What one read of a pipe brought.
pub struct Chunk {
    pub command: CommandId,
    pub is_err: bool,
    pub data: Vec<u8>,
    /// The write end is closed everywhere: the pipe is gone.
    pub eof: bool,
}

#[derive(Default)]
pub struct Capture {
    pipes: HashMap<PipeId, Pipe>,
    ids: IdGen<PipeId>,
}

impl Capture {
    /// Read `fd` (non-blocking) from the loop for `command`.
    pub fn add(
        &mut self,
        reactor: &Reactor,
        command: CommandId,
        is_err: bool,
        fd: OwnedFd,
    ) -> Option<PipeId> {
        let id = self.ids.next();
        reactor
            .add(fd.as_fd(), Token::Log(id), Interest::Read)
            .ok()?;
        self.pipes.insert(
            id,
            Pipe {
                command,
                is_err,
                fd,
            },
        );
        Some(id)
    }

    /// Read what the pipe holds, bounded. At EOF the pipe is dropped (closing its only
    /// reference also removes it from epoll).
    pub fn read(&mut self, id: PipeId) -> Option<Chunk> {
        let pipe = self.pipes.get(&id)?;
        let mut buf = [0u8; 16 * 1024];
        let mut data = Vec::new();
        let mut eof = false;
        while data.len() < READ_PER_TURN {
            match rustix::io::read(&pipe.fd, &mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        let chunk = Chunk {
            command: pipe.command,
            is_err: pipe.is_err,
            data,
            eof,
        };
        if eof {
            self.pipes.remove(&id);
        }
        Some(chunk)
    }

    /// The raw fd of a command's stdout (`false`) or stderr (`true`) pipe, if still open:
    /// recorded in a re-exec snapshot.
    pub fn fd_of(&self, ids: &[PipeId], is_err: bool) -> Option<RawFd> {
        ids.iter()
            .filter_map(|id| self.pipes.get(id))
            .find(|p| p.is_err == is_err)
            .map(|p| p.fd.as_raw_fd())
    }

    /// Before a re-exec: every pipe stays open across exec.
    pub fn hand_over(&self) {
        for pipe in self.pipes.values() {
            let _ = rustix::io::fcntl_setfd(&pipe.fd, rustix::io::FdFlags::empty());
        }
    }
}
