//! Every deadline of the loop behind one timerfd: a sorted set of (instant, action),
//! the timerfd armed for the earliest. A fired entry whose subject has moved on is
//! harmless: the supervisor ignores a timer that is not due for its current state.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerAction {
    /// Deliver `supervise::Event::Timer` to this command.
    Command(u64),
    /// A workspace's TTL ran out.
    WorkspaceTtl(String),
    /// The shutdown deadline: kill whatever is left.
    ShutdownDeadline,
    /// The debounced durable snapshot write is due.
    Durable,
    /// Sample cgroup statistics.
    Stats,
    /// Report what a watched cgroup event file counted since its last report.
    CgroupReport(u64),
    /// Reap orphans whose SIGCHLD may have merged into a command's.
    OrphanScan,
    /// The debounced /run snapshot write is due.
    RunSnapshot,
}

pub struct Timers {
    fd: OwnedFd,
    set: BTreeMap<(Instant, u64), TimerAction>,
    seq: u64,
    armed: Option<Instant>,
}

impl Timers {
    pub fn new() -> std::io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
        )?;
        Ok(Timers {
            fd,
            set: BTreeMap::new(),
            seq: 0,
            armed: None,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn add(&mut self, at: Instant, action: TimerAction) {
        self.seq += 1;
        self.set.insert((at, self.seq), action);
    }

    /// Drain the timerfd and return every action due at `now`.
    pub fn expired(&mut self, now: Instant) -> Vec<TimerAction> {
        let mut buf = [0u8; 8];
        // The count of expirations is not needed: the set says what is due.
        let _ = rustix::io::read(&self.fd, &mut buf);
        self.armed = None;
        let mut due = Vec::new();
        while let Some(entry) = self.set.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        due
    }

    /// Arm the timerfd for the earliest entry, if it changed.
    pub fn rearm(&mut self, now: Instant) -> std::io::Result<()> {
        let next = self.set.keys().next().map(|k| k.0);
        if next == self.armed {
            return Ok(());
        }
        self.armed = next;
        // A zero it_value disarms the timer, so an overdue entry gets 1 ns.
        let delay = next.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(now)
                .max(Duration::from_nanos(1))
        });
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: delay.as_secs() as _,
                tv_nsec: delay.subsec_nanos() as _,
            },
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &spec)?;
        Ok(())
    }
}
