//! One token per event source, stored in epoll's data: the kind in the top byte, the
//! source's id below. A token whose source is gone is ignored by its owner, never a panic:
//! ids are never reused (see [`crate::ids`]), so a stale token cannot reach a newcomer.

use crate::ids::{CommandId, ConnId, FanoutId, PipeId, WatchId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    Signal,
    Timer,
    Listener,
    Conn(ConnId),
    /// The read end of a captured output pipe.
    Log(PipeId),
    /// A workspace's `cgroup.events` or `memory.events`, or a leaf's `pids.events`.
    Cgroup(WatchId),
    /// The pidfd of a command's live process: readable when it exits.
    Child(CommandId),
    /// A command's sd_notify socket: a datagram waits.
    Notify(CommandId),
    /// A command's tcp probe: its connect finished.
    Probe(CommandId),
    /// A command's s6 notification fd (the read end): the service wrote, or closed it.
    ReadyFd(CommandId),
    /// The syslog sink (`/dev/log`): messages wait.
    Syslog,
    /// A fan-out's source pipe: its node wrote.
    FanoutIn(FanoutId),
    /// A fan-out's reader pipes (all of them under one token): one has room again.
    FanoutOut(FanoutId),
    /// The vsock control listener (`arje.vsock=PORT`).
    VsockListener,
}

const ID_MASK: u64 = (1 << 56) - 1;

impl Token {
    pub fn encode(self) -> u64 {
        let (kind, id) = match self {
            Token::Signal => (1, 0),
            Token::Timer => (2, 0),
            Token::Listener => (3, 0),
            Token::Conn(id) => (4, id.raw()),
            Token::Log(id) => (5, id.raw()),
            Token::Cgroup(id) => (6, id.raw()),
            Token::Child(id) => (7, id.raw()),
            Token::Notify(id) => (8, id.raw()),
            Token::Probe(id) => (9, id.raw()),
            Token::ReadyFd(id) => (10, id.raw()),
            Token::Syslog => (11, 0),
            Token::FanoutIn(id) => (12, id.raw()),
            Token::FanoutOut(id) => (13, id.raw()),
            Token::VsockListener => (14, 0),
        };
        (kind << 56) | (id & ID_MASK)
    }

    pub fn decode(raw: u64) -> Option<Token> {
        let id = raw & ID_MASK;
        Some(match raw >> 56 {
            1 => Token::Signal,
            2 => Token::Timer,
            3 => Token::Listener,
            4 => Token::Conn(id.into()),
            5 => Token::Log(id.into()),
            6 => Token::Cgroup(id.into()),
            7 => Token::Child(id.into()),
            8 => Token::Notify(id.into()),
            9 => Token::Probe(id.into()),
            10 => Token::ReadyFd(id.into()),
            11 => Token::Syslog,
            12 => Token::FanoutIn(id.into()),
            13 => Token::FanoutOut(id.into()),
            14 => Token::VsockListener,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_token_round_trip_all_kinds() {
        for t in [
            Token::Signal,
            Token::Timer,
            Token::Listener,
            Token::Conn(7.into()),
            Token::Log(ID_MASK.into()),
            Token::Cgroup(0.into()),
            Token::Child(3.into()),
            Token::Notify(9.into()),
            Token::Probe(10.into()),
            Token::ReadyFd(11.into()),
            Token::Syslog,
            Token::FanoutIn(12.into()),
            Token::FanoutOut(13.into()),
            Token::VsockListener,
        ] {
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
        assert_eq!(Token::decode(0), None);
    }
}
