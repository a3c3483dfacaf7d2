//! The process table: spawning, the live pid → command map, and reaping. Owns the spawner,
//! /dev/null (every child's stdin), and the orphan-scan rule; the pidfds themselves live
//! with each run ([`super::commands::Run`]), so a run's pidfd is closed with it.
//!
//! Reaping has two paths. A command's pidfd becoming readable reaps exactly that process
//! (`waitid(P_PIDFD)`: O(1), whatever the number of other children). Orphans the kernel
//! reparents to us (PID 1 or a subreaper) are found with `waitid(P_ALL)` in a loop, which
//! scans every child (2.9 ms with 10,000 of them): so a SIGCHLD from one of our own
//! commands defers that scan ([`ORPHAN_SCAN_DELAY`], or the next non-`run` request), and
//! only a SIGCHLD from an unknown pid scans at once. A pid reaped by either path is
//! reported once: [`Procs::exited`] removes it from the table.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use shuma_card::ExitStatus;

use crate::ids::CommandId;
use crate::sys::spawn::{CgroupTarget, ExecPlan, SpawnError, Spawned, Spawner};

/// Pids reaped lately, so a SIGCHLD read after the pidfd event still counts as ours.
pub const RECENTLY_REAPED: usize = 256;

/// How long a possibly merged orphan SIGCHLD may wait for its scan.
pub const ORPHAN_SCAN_DELAY: Duration = Duration::from_millis(20);

/// What a SIGCHLD record asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// From an unknown pid: an orphan; scan now.
    Now,
    /// From one of ours: its pidfd reaps it; scan later in case an orphan's SIGCHLD
    /// merged into it.
    Later,
}

pub struct Procs {
    spawner: Spawner,
    dev_null: OwnedFd,
    /// Live pid → command. A pid leaves the map the moment it is reaped.
    pids: HashMap<i32, CommandId>,
    recently_reaped: VecDeque<i32>,
    /// A SIGCHLD may stand for an orphan not reaped yet.
    scan_pending: bool,
    orphans_reaped: u64,
}

impl Procs {
    /// `child_nofile`: the soft RLIMIT_NOFILE children get ([`crate::Config`]).
    pub fn new(child_nofile: Option<u64>) -> std::io::Result<Procs> {
        let dev_null = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        let reset: Vec<i32> = super::signals::ignored().collect();
        let mut spawner = Spawner::new(&reset);
        // A subreaper started with a raised oom_score_adj (to protect itself) must not
        // pass it on to its children.
        spawner.nofile = child_nofile.map(|soft| {
            let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .maximum
                .unwrap_or(libc::RLIM_INFINITY);
            libc::rlimit {
                rlim_cur: soft.min(hard),
                rlim_max: hard,
            }
        });
        spawner.reset_oom_score_adj =
            std::fs::read_to_string("/proc/self/oom_score_adj").is_ok_and(|v| v.trim() != "0");
        Ok(Procs {
            spawner,
            dev_null,
            pids: HashMap::new(),
            recently_reaped: VecDeque::new(),
            scan_pending: false,
            orphans_reaped: 0,
        })
    }

    /// Start `plan` with stdin on /dev/null and `out`/`err` as stdout/stderr, born in
    /// `target`'s cgroup, and track it as `id`'s.
    pub fn spawn(
        &mut self,
        id: CommandId,
        plan: &ExecPlan,
        out: BorrowedFd<'_>,
        err: BorrowedFd<'_>,
        target: Option<&CgroupTarget<'_>>,
    ) -> Result<Spawned, SpawnError> {
        let spawned = self
            .spawner
            .spawn(plan, [self.dev_null.as_fd(), out, err], target)?;
        self.pids.insert(spawned.pid, id);
        Ok(spawned)
    }

    /// A process adopted after a re-exec.
    pub fn track(&mut self, pid: i32, id: CommandId) {
        self.pids.insert(pid, id);
    }

    /// Stop tracking a pid whose command is gone (killed at the shutdown deadline): it is
    /// reaped later as an orphan.
    pub fn forget(&mut self, pid: i32) {
        self.pids.remove(&pid);
    }

    pub fn running(&self) -> usize {
        self.pids.len()
    }

    pub fn orphans_reaped(&self) -> u64 {
        self.orphans_reaped
    }

    pub fn scan_pending(&self) -> bool {
        self.scan_pending
    }

    /// A SIGCHLD record from `pid` arrived.
    pub fn on_sigchld(&mut self, pid: i32) -> Scan {
        // The pidfd event may have been handled first in this batch: a command reaped a
        // moment ago counts as ours too.
        if self.pids.contains_key(&pid) || self.recently_reaped.contains(&pid) {
            self.scan_pending = true;
            Scan::Later
        } else {
            Scan::Now
        }
    }

    /// Reap the process behind `pidfd` if it has exited. `None`: not exited after all (a
    /// spurious wakeup, or a stop/continue report).
    pub fn reap_pidfd(&mut self, pid: i32, pidfd: BorrowedFd<'_>) -> Option<ExitStatus> {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::__WALL;
        match waitid(Id::PIDFd(pidfd), flags) {
            Ok(WaitStatus::Exited(_, code)) => Some(ExitStatus::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => Some(ExitStatus::Signal(sig as i32)),
            Ok(_) | Err(nix::Error::EINTR) => None,
            Err(e) => {
                // ECHILD would mean someone else reaped it: record the run as ended
                // rather than keep a dead pid on the books forever.
                log::error!("waitid on the pidfd of pid {pid}: {e}");
                Some(ExitStatus::Signal(0))
            }
        }
    }

    /// Reap every child that has exited (orphans, and commands whose pidfd event has not
    /// been handled yet), until nothing is left.
    pub fn reap_all(&mut self) -> Vec<(i32, ExitStatus)> {
        self.scan_pending = false;
        let mut reaped = Vec::new();
        loop {
            match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    reaped.push((pid.as_raw(), ExitStatus::Code(code)))
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    reaped.push((pid.as_raw(), ExitStatus::Signal(sig as i32)))
                }
                Ok(WaitStatus::StillAlive) => return reaped,
                Ok(_) | Err(nix::Error::EINTR) => continue,
                Err(_) => return reaped, // ECHILD: no children at all.
            }
        }
    }

    /// `pid` was reaped: whose it was, if ours (an orphan is counted).
    pub fn exited(&mut self, pid: i32) -> Option<CommandId> {
        if self.recently_reaped.len() == RECENTLY_REAPED {
            self.recently_reaped.pop_front();
        }
        self.recently_reaped.push_back(pid);
        let id = self.pids.remove(&pid);
        if id.is_none() {
            self.orphans_reaped += 1;
        }
        id
    }
}
