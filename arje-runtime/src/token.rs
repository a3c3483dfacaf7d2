//! One token per event source, stored in epoll's data: the kind in the top byte, the
//! source's id below. A token whose source is gone is ignored by the loop, never a panic.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    Signal,
    Timer,
    Listener,
    Conn(u64),
    /// The read end of a captured output pipe.
    Log(u64),
    /// A workspace's `cgroup.events` or `memory.events` / `pids.events`.
    Cgroup(u64),
    /// The pidfd of a command's live process: readable when it exits.
    Child(u64),
}

const ID_MASK: u64 = (1 << 56) - 1;

impl Token {
    pub fn encode(self) -> u64 {
        let (kind, id) = match self {
            Token::Signal => (1, 0),
            Token::Timer => (2, 0),
            Token::Listener => (3, 0),
            Token::Conn(id) => (4, id),
            Token::Log(id) => (5, id),
            Token::Cgroup(id) => (6, id),
            Token::Child(id) => (7, id),
        };
        (kind << 56) | (id & ID_MASK)
    }

    pub fn decode(raw: u64) -> Option<Token> {
        let id = raw & ID_MASK;
        Some(match raw >> 56 {
            1 => Token::Signal,
            2 => Token::Timer,
            3 => Token::Listener,
            4 => Token::Conn(id),
            5 => Token::Log(id),
            6 => Token::Cgroup(id),
            7 => Token::Child(id),
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
            Token::Conn(7),
            Token::Log(ID_MASK),
            Token::Cgroup(0),
        ] {
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
        assert_eq!(Token::decode(0), None);
    }
}
