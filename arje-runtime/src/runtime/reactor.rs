//! The epoll instance: every component registers its own fds here under its own
//! [`Token`], and the loop waits here. Waiting arms the timerfd first, so no deadline
//! added since the last wait can be missed.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::epoll;

use crate::timers::Timers;
use crate::token::Token;

/// What a registration waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Readable (pipes, sockets, pidfds, signalfd, timerfd).
    Read,
    /// Readable and writable (a connection with output queued).
    ReadWrite,
    /// EPOLLPRI: how the kernel notifies a modified cgroup event file.
    Priority,
    /// Writable only (a connection whose peer has shut down its writing side: its EOF
    /// stays readable, and would be reported on every wait).
    Write,
    /// Nothing but what epoll always reports (EPOLLHUP, EPOLLERR).
    Nothing,
}

impl Interest {
    fn flags(self) -> epoll::EventFlags {
        match self {
            Interest::Read => epoll::EventFlags::IN,
            Interest::ReadWrite => epoll::EventFlags::IN | epoll::EventFlags::OUT,
            Interest::Priority => epoll::EventFlags::PRI,
            Interest::Write => epoll::EventFlags::OUT,
            Interest::Nothing => epoll::EventFlags::empty(),
        }
    }
}

/// One ready source.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    pub token: Token,
    pub flags: epoll::EventFlags,
}

pub struct Reactor {
    epoll: OwnedFd,
    events: Vec<epoll::Event>,
}

impl Reactor {
    pub fn new() -> std::io::Result<Reactor> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        Ok(Reactor {
            epoll,
            events: Vec::with_capacity(256),
        })
    }

    /// [epoll_ctl(2)] `EPOLL_CTL_ADD`.
    ///
    /// [epoll_ctl(2)]: https://man7.org/linux/man-pages/man2/epoll_ctl.2.html
    pub fn add(&self, fd: BorrowedFd<'_>, token: Token, interest: Interest) -> std::io::Result<()> {
        epoll::add(
            &self.epoll,
            fd,
            epoll::EventData::new_u64(token.encode()),
            interest.flags(),
        )
        .map_err(Into::into)
    }

    /// `EPOLL_CTL_MOD`: change what a registered fd waits for.
    pub fn modify(&self, fd: BorrowedFd<'_>, token: Token, interest: Interest) {
        let _ = epoll::modify(
            &self.epoll,
            fd,
            epoll::EventData::new_u64(token.encode()),
            interest.flags(),
        );
    }

    /// `EPOLL_CTL_DEL`. Closing the last reference to a file removes it too, so owners
    /// that drop the fd right away may skip this.
    pub fn remove(&self, fd: BorrowedFd<'_>) {
        let _ = epoll::delete(&self.epoll, fd);
    }

    /// Arm the timerfd for the earliest deadline, then block until a source is ready
    /// (or `timeout`, for in-process drivers and tests). Returns the ready sources in
    /// `out` (cleared first).
    pub fn wait(&mut self, timers: &mut Timers, timeout: Option<Duration>, out: &mut Vec<Ready>) {
        out.clear();
        if let Err(e) = timers.rearm(Instant::now()) {
            log::error!("timerfd: {e}");
        }
        self.events.clear();
        let timeout = timeout.map(|d| rustix::time::Timespec {
            tv_sec: d.as_secs() as _,
            tv_nsec: d.subsec_nanos() as _,
        });
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut self.events),
            timeout.as_ref(),
        ) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            // EBADF/EINVAL would mean our own epoll fd is broken: nothing else can wake
            // us, so log and keep trying rather than exit.
            Err(e) => log::error!("epoll_wait: {e}"),
        }
        out.extend(self.events.iter().filter_map(|ev| {
            Some(Ready {
                token: Token::decode(ev.data.u64())?,
                flags: ev.flags,
            })
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timers::TimerAction;

    #[test]
    fn test_wait_arms_a_deadline_added_before_it() {
        // Arrange: only the timerfd is registered, and a deadline is added with no turn
        // around it (as `Runtime::new` or an in-process caller does).
        let mut reactor = Reactor::new().unwrap();
        let mut timers = Timers::new().unwrap();
        reactor
            .add(timers.fd(), Token::Timer, Interest::Read)
            .unwrap();
        timers.add(Instant::now(), TimerAction::ShutdownDeadline);
        let mut ready = Vec::new();

        // Act: nothing else can wake this wait; the bound only turns a hang into a failure.
        reactor.wait(&mut timers, Some(Duration::from_secs(60)), &mut ready);

        // Assert
        assert_eq!(
            ready.len(),
            1,
            "the wait timed out: the timerfd was not armed"
        );
        assert_eq!(ready[0].token, Token::Timer);
    }
}
