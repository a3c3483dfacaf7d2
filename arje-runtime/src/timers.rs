//! Every deadline of the loop behind one timerfd: a sorted set of (instant, action), the
//! timerfd armed for the earliest.
//!
//! Safe by construction:
//! - [`Timers::add`] only records the deadline; the loop arms the timerfd for the earliest
//!   one right before every wait ([`crate::runtime`]'s reactor calls [`Timers::rearm`]), so
//!   a deadline added anywhere (before the first turn, from an in-process caller, inside a
//!   handler) is seen by the next wait. (Arming at the end of a turn missed deadlines added
//!   outside one: a 200 ms TTL set before the first turn fired after about 3 s.)
//! - A singleton action (the stats sampler, the debounced snapshot writes, the orphan scan,
//!   a watch's report) goes through [`Timers::add_once`]: the timer set itself remembers
//!   that one is pending, so no owner keeps an "armed" flag by convention, and a second
//!   caller cannot start a second periodic chain (restoring N workspaces once started N
//!   stats samplers).
//! - Actions name their subject by a never-reused id, so a timer that outlives its subject
//!   finds nothing.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};

use crate::ids::{CommandId, ConnId, WatchId, WorkspaceId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerAction {
    /// Deliver `supervise::Event::Timer` to this command; it ignores a timer that is not
    /// due in its current state.
    Command(CommandId),
    /// A workspace's TTL ran out.
    WorkspaceTtl(WorkspaceId),
    /// The shutdown deadline: kill whatever is left.
    ShutdownDeadline,
    /// The debounced durable snapshot write is due.
    Durable,
    /// Sample cgroup statistics (periodic while any workspace has a cgroup).
    Stats,
    /// Report what a watched cgroup event file counted since its last report.
    CgroupReport(WatchId),
    /// Reap orphans whose SIGCHLD may have merged into a command's.
    OrphanScan,
    /// The debounced /run snapshot write is due.
    RunSnapshot,
    /// Watch the control listener again after an accept failure (`server.rs`).
    ResumeAccept,
    /// A control connection may be due to close (no Hello, idle): the server checks.
    ConnDeadline(ConnId),
    /// A command's readiness deadline or watchdog may be due (`ready.rs` checks).
    Ready(CommandId),
    /// A `WaitReady` client's timeout may be due.
    WaitReady(ConnId),
    /// A command's readiness probe or health check is due (`probes.rs`).
    Probe(CommandId),
    /// A pipeline's restart backoff, or a node's drain during a stop, may be due
    /// (`pipelines.rs` checks).
    Pipeline(crate::ids::PipelineId),
}

pub struct Timers {
    fd: OwnedFd,
    set: BTreeMap<(Instant, u64), TimerAction>,
    /// Singleton actions currently in `set`, with their keys there.
    once: HashMap<TimerAction, (Instant, u64)>,
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
            once: HashMap::new(),
            seq: 0,
            armed: None,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Fire `action` at `at`. The next wait of the loop sees it.
    pub fn add(&mut self, at: Instant, action: TimerAction) {
        self.seq += 1;
        self.set.insert((at, self.seq), action);
    }

    /// Fire `action` at `at` unless the same action is already pending (whose deadline
    /// then stands). Returns whether it was added.
    pub fn add_once(&mut self, at: Instant, action: TimerAction) -> bool {
        if self.once.contains_key(&action) {
            return false;
        }
        self.add(at, action);
        self.once.insert(action, (at, self.seq));
        true
    }

    /// Fire the singleton `action` at `at` if that is sooner than when it is due (or
    /// add it, if it is not pending).
    pub fn bring_forward(&mut self, at: Instant, action: TimerAction) {
        match self.once.get(&action) {
            Some(&(due, _)) if due <= at => {}
            _ => self.move_once(at, action),
        }
    }

    /// Fire the singleton `action` at `at` instead of when it was due: a deadline that
    /// moved later is not a wake-up to find that out.
    pub fn move_once(&mut self, at: Instant, action: TimerAction) {
        if let Some(key) = self.once.remove(&action) {
            self.set.remove(&key);
        }
        self.add_once(at, action);
    }

    #[cfg(test)]
    /// How many `action`s are pending (added and not yet fired).
    pub fn pending(&self, action: TimerAction) -> usize {
        self.set.values().filter(|a| **a == action).count()
    }

    /// Is an action due at `now`? (No syscall: the set says.)
    pub fn any_due(&self, now: Instant) -> bool {
        self.set.keys().next().is_some_and(|k| k.0 <= now)
    }

    /// Drain the timerfd and return every action due at `now`, earliest first.
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
            let key = *entry.key();
            let action = entry.remove();
            // Only the singleton's own entry ends it (an action also added plainly
            // leaves the singleton pending).
            if self.once.get(&action) == Some(&key) {
                self.once.remove(&action);
            }
            due.push(action);
        }
        due
    }

    /// Arm the timerfd for the earliest entry, if it changed. The reactor calls this
    /// right before every wait.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_move_once_replaces_the_pending_deadline() {
        // Arrange: a Hello's deadline pending, then the idle one instead.
        let mut timers = Timers::new().unwrap();
        let t0 = Instant::now();
        let action = TimerAction::RunSnapshot;
        assert!(timers.add_once(t0 + Duration::from_secs(5), action));

        // Act
        timers.move_once(t0 + Duration::from_secs(60), action);

        // Assert: nothing at the old deadline, one firing at the new one.
        assert!(!timers.any_due(t0 + Duration::from_secs(10)));
        assert!(timers.expired(t0 + Duration::from_secs(10)).is_empty());
        assert_eq!(timers.pending(action), 1);
        assert_eq!(timers.expired(t0 + Duration::from_secs(61)), vec![action]);
        assert!(timers.add_once(t0, action), "fired: it may be added again");
    }

    #[test]
    fn test_bring_forward_moves_only_to_a_sooner_deadline() {
        // Arrange
        let mut timers = Timers::new().unwrap();
        let t0 = Instant::now();
        let action = TimerAction::RunSnapshot;
        timers.add_once(t0 + Duration::from_secs(60), action);

        // Act: sooner moves it; later leaves it.
        timers.bring_forward(t0 + Duration::from_secs(5), action);
        timers.bring_forward(t0 + Duration::from_secs(30), action);

        // Assert
        assert_eq!(timers.pending(action), 1);
        assert_eq!(timers.expired(t0 + Duration::from_secs(6)), vec![action]);
    }

    #[test]
    fn test_a_plain_entry_firing_leaves_the_singleton_pending() {
        // Arrange: the same action once as a singleton (later) and once plainly.
        let mut timers = Timers::new().unwrap();
        let t0 = Instant::now();
        let action = TimerAction::RunSnapshot;
        timers.add_once(t0 + Duration::from_secs(60), action);
        timers.add(t0 + Duration::from_secs(1), action);

        // Act
        let fired = timers.expired(t0 + Duration::from_secs(2));

        // Assert: the singleton still stands, so no second one can be added.
        assert_eq!(fired, vec![action]);
        assert!(!timers.add_once(t0, action));
    }

    #[test]
    fn test_add_once_keeps_one_pending_until_it_fires() {
        // Arrange
        let mut t = Timers::new().unwrap();
        let now = Instant::now();

        // Act
        let first = t.add_once(now, TimerAction::Stats);
        let second = t.add_once(now, TimerAction::Stats);
        let fired = t.expired(now);
        let again = t.add_once(now, TimerAction::Stats);

        // Assert
        assert!(first && !second && again);
        assert_eq!(fired, vec![TimerAction::Stats]);
        assert_eq!(t.pending(TimerAction::Stats), 1);
    }

    #[test]
    fn test_expired_returns_only_due_actions_in_order() {
        // Arrange: a fake clock; nothing here waits on the timerfd.
        let mut t = Timers::new().unwrap();
        let now = Instant::now();
        let ws = WorkspaceId::from(1);
        t.add(now + Duration::from_secs(2), TimerAction::WorkspaceTtl(ws));
        t.add(now + Duration::from_secs(1), TimerAction::ShutdownDeadline);

        // Act
        let at_1s = t.expired(now + Duration::from_secs(1));
        let at_3s = t.expired(now + Duration::from_secs(3));

        // Assert
        assert_eq!(at_1s, vec![TimerAction::ShutdownDeadline]);
        assert_eq!(at_3s, vec![TimerAction::WorkspaceTtl(ws)]);
    }
}
