//! Stopping a run that has no cgroup: every process arje can attribute to it, not only
//! its process group.
//!
//! With a cgroup, `cgroup.kill` of the leaf reaches everything the run started. Without
//! one, the run's process group misses a descendant that moved to a group of its own (a
//! shell with job control does that for every background job) and the stop answered
//! "stopped" while it ran on. What is attributable:
//!
//! - the run's **session**: the spawner's child calls setsid, so the session id is the
//!   run's pid, and a descendant stays in it unless it calls setsid itself;
//! - a descendant that left the session, by **parentage**, while its parent is still a
//!   member (reported with a Warning: once its parent exits it is reparented to arje and
//!   nothing ties it to the run any more).
//!
//! Sweeps read /proc only while the run is unreaped (at the stop signal, at the kill, and
//! when its pidfd says it exited, before it is reaped), because only then does its pid
//! pin the session id (see `sessions.rs`). Each process found is held by a pidfd
//! (a *straggler* of the command), registered under the command's `Token::Child`, sent
//! the stop signal at once and SIGKILL when the command's grace is over. The command is
//! busy, and its workspace not removed, until every straggler is gone: reaped by arje (an
//! orphan reparented to it) or exited under another parent. So `ws stop` answers only
//! after they are gone.

use std::collections::HashSet;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal as RSignal};
use shuma_card::EventKind;

use super::sessions::{self, ProcStat};
use super::Runtime;
use crate::ids::{CommandId, WorkspaceId};
use crate::token::Token;

/// A process of a command's session (or a descendant that left it) being stopped.
pub struct Straggler {
    pub pid: i32,
    pub start_ticks: u64,
    /// Registered under the command's `Token::Child`: readable once it exits.
    pub pidfd: OwnedFd,
    /// It exited, but as the zombie of another parent: no longer in epoll (a pidfd stays
    /// readable, and epoll would report it on every wait). It is gone when that parent
    /// reaps it, or when arje does once it is reparented ([`Runtime::straggler_reaped`]).
    pub zombie: bool,
}

/// The processes of session `sid` other than its leader, and the descendants (by
/// parentage) of the leader or of those that left the session, from one reading of all
/// of /proc (where the kernel cannot list children). The second list is those that left.
pub(crate) fn attributable(procs: &[ProcStat], sid: i32) -> (Vec<ProcStat>, Vec<ProcStat>) {
    let mut found: Vec<ProcStat> = procs
        .iter()
        .filter(|p| p.sid == sid && p.pid != sid && !p.is_zombie())
        .copied()
        .collect();
    let mut tree: HashSet<i32> = found.iter().map(|p| p.pid).collect();
    tree.insert(sid);
    let mut left = Vec::new();
    loop {
        let more: Vec<ProcStat> = procs
            .iter()
            .filter(|p| tree.contains(&p.ppid) && !tree.contains(&p.pid) && !p.is_zombie())
            .copied()
            .collect();
        if more.is_empty() {
            break;
        }
        for p in more {
            tree.insert(p.pid);
            left.push(p);
            found.push(p);
        }
    }
    (found, left)
}

/// What [`attributable`] finds for session `sid`, through the children files: the run's
/// descendants, and the orphans of its session (reparented to arje when their parent
/// exited) with theirs. Without those files, from all of /proc.
///
/// A walk races the processes it reads: a member that exits after arje's children were
/// read, but before its own children were, hands them to arje unseen (the stop signal
/// makes this likely, since it reaches the whole process group at once). The kernel
/// moves them before the exit is visible, so reading arje's children again after a walk
/// finds them; the walk goes on until a reading adds nothing.
///
/// `is_run` names arje's children that are other commands' runs: each leads a session of
/// its own, so it is never a member of this one, and its stat is not read. (With 1,000
/// services, reading every child's stat on every reading of every stop's sweep made
/// stopping them all take 28 s: 98.8% of arje's CPU in a profile.)
fn attributable_to(sid: i32, is_run: impl Fn(i32) -> bool) -> (Vec<ProcStat>, Vec<ProcStat>) {
    walk_session(sid, is_run).unwrap_or_else(|| attributable(&sessions::all(), sid))
}

fn walk_session(sid: i32, is_run: impl Fn(i32) -> bool) -> Option<(Vec<ProcStat>, Vec<ProcStat>)> {
    /// Bounds the walk under a fork storm; a later sweep (at the kill, at the run's exit)
    /// looks again.
    const READINGS: usize = 16;
    let me = std::process::id() as i32;
    let mut seen = HashSet::from([sid]);
    let (mut found, mut left) = (Vec::new(), Vec::new());
    let mut roots = sessions::children(sid)?;
    for _ in 0..READINGS {
        let (f, l) = sessions::descendants(roots, sid, &mut seen)?;
        found.extend(f);
        left.extend(l);
        roots = sessions::children(me)?
            .into_iter()
            .filter(|pid| !seen.contains(pid) && (*pid == sid || !is_run(*pid)))
            .filter(|pid| sessions::stat(*pid).is_some_and(|p| p.sid == sid))
            .collect();
        if roots.is_empty() {
            break;
        }
    }
    Some((found, left))
}

impl Runtime {
    /// Find the processes attributable to the run of `id` that are not held yet (only
    /// while the run is unreaped and has no leaf cgroup), hold each by a pidfd and send
    /// it `signal`.
    pub(crate) fn sweep_session(&mut self, id: CommandId, signal: i32) {
        // `kill_mode = "process"`: what the main process started is left alone.
        if self
            .table
            .commands
            .get(&id)
            .is_some_and(|c| c.spec.kill_mode == shuma_card::KillMode::Process)
        {
            return;
        }
        let Some(cmd) = self.table.commands.get(&id) else {
            return;
        };
        let Some(run) = cmd.run.as_ref().filter(|r| r.leaf.is_none()) else {
            return;
        };
        let sid = run.pid;
        let held: HashSet<(i32, u64)> = cmd
            .stragglers
            .iter()
            .map(|s| (s.pid, s.start_ticks))
            .collect();
        let (workspace, name) = (cmd.workspace.clone(), cmd.spec.name.clone());
        let procs = &self.procs;
        let (found, left) = attributable_to(sid, |pid| procs.is_run(pid));
        let mut new = Vec::new();
        for p in found
            .iter()
            .filter(|p| !held.contains(&(p.pid, p.start_ticks)))
        {
            let Some(pidfd) =
                Pid::from_raw(p.pid).and_then(|pid| pidfd_open(pid, PidfdFlags::empty()).ok())
            else {
                continue; // Gone already.
            };
            // The pid may have been recycled between the reading of /proc and the open.
            if !sessions::present(p.pid, p.start_ticks) {
                continue;
            }
            if let Err(e) = self.reactor.add(
                pidfd.as_fd(),
                Token::Child(id),
                super::reactor::Interest::Read,
            ) {
                log::warn!("epoll_ctl for the pidfd of pid {}: {e}", p.pid);
            }
            if let Some(sig) = RSignal::from_named_raw(signal) {
                let _ = pidfd_send_signal(&pidfd, sig);
            }
            self.procs.hold_straggler(p.pid, id);
            new.push(Straggler {
                pid: p.pid,
                start_ticks: p.start_ticks,
                pidfd,
                zombie: false,
            });
        }
        let escaped: Vec<String> = left
            .iter()
            .filter(|p| new.iter().any(|s| s.pid == p.pid))
            .map(|p| p.pid.to_string())
            .collect();
        if let Some(cmd) = self.table.commands.get_mut(&id) {
            cmd.stragglers.extend(new);
        }
        if !escaped.is_empty() {
            let message = format!(
                "workspace {workspace}: {name}: process(es) {} left the command's session \
                 (setsid); stopped through their parent, but without a cgroup a process \
                 that leaves the session after its parent exits cannot be found",
                escaped.join(", ")
            );
            log::warn!("{message}");
            self.event(EventKind::Warning { message });
        }
    }

    /// Send `signal` to every straggler of `id`.
    pub(crate) fn signal_stragglers(&self, id: CommandId, signal: i32) {
        let Some(sig) = RSignal::from_named_raw(signal) else {
            return;
        };
        for s in self
            .table
            .commands
            .get(&id)
            .map_or(&[][..], |c| &c.stragglers)
        {
            let _ = pidfd_send_signal(&s.pidfd, sig);
        }
    }

    /// A command's timer fired: once its stop grace is over, its stragglers get SIGKILL
    /// (its own process, if still there, got it from the supervisor's `Kill`), and those
    /// another parent reaped unseen are let go.
    pub(crate) fn straggler_deadline(&mut self, id: CommandId, now: Instant) {
        let due = self
            .table
            .commands
            .get(&id)
            .and_then(|c| c.stragglers_kill_at)
            .is_some_and(|at| now >= at);
        if due {
            self.signal_stragglers(id, libc::SIGKILL);
            self.forget_stragglers(id, |s| !sessions::present(s.pid, s.start_ticks));
        }
    }

    /// The pidfd of a straggler of `id` may be readable: let go of those that are gone,
    /// reaping those that are arje's children (orphans reparented to it).
    pub(crate) fn reap_stragglers(&mut self, id: CommandId) {
        let reactor = &self.reactor;
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        let mut reaped = Vec::new();
        for s in cmd.stragglers.iter_mut().filter(|s| !s.zombie) {
            if !exited(s.pidfd.as_fd()) {
                continue;
            }
            use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::__WALL;
            match waitid(Id::PIDFd(s.pidfd.as_fd()), flags) {
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => reaped.push(s.pid),
                // Not arje's child: gone, or a zombie its parent has still to reap.
                Err(nix::Error::ECHILD) => {
                    reactor.remove(s.pidfd.as_fd());
                    s.zombie = true;
                }
                _ => {}
            }
        }
        for pid in &reaped {
            self.procs.exited(*pid);
        }
        self.forget_stragglers(id, |s| {
            reaped.contains(&s.pid) || (s.zombie && !sessions::present(s.pid, s.start_ticks))
        });
    }

    /// arje reaped `pid`, not one of its commands' runs: if it was a straggler, it is
    /// gone.
    pub(crate) fn straggler_reaped(&mut self, pid: i32) {
        if let Some(id) = self.procs.straggler_gone(pid) {
            self.forget_stragglers(id, |s| s.pid == pid);
        }
    }

    /// Let go of the stragglers of `id` that `gone` says are gone; once none is left,
    /// its workspace may go on stopping.
    fn forget_stragglers(&mut self, id: CommandId, gone: impl Fn(&Straggler) -> bool) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        if cmd.stragglers.is_empty() {
            return;
        }
        let (kept, left): (Vec<_>, Vec<_>) = std::mem::take(&mut cmd.stragglers)
            .into_iter()
            .partition(|s| !gone(s));
        cmd.stragglers = kept;
        let (ws, done) = (cmd.ws, cmd.stragglers.is_empty());
        for s in left {
            self.procs.straggler_gone(s.pid);
            if !s.zombie {
                self.reactor.remove(s.pidfd.as_fd());
            }
        }
        if done {
            self.workspace_progress(ws);
        }
    }
}

impl Runtime {
    /// A workspace without a cgroup finished stopping. A descendant that called setsid
    /// and whose parent then exited is tied to nothing (not the session, not a parent),
    /// so it ran on; what can be said is which children of arje (orphans are reparented
    /// to it) started since the workspace was created and belong to no command. Name
    /// them in a Warning, so the operator can tell.
    pub(crate) fn warn_unattributed(&mut self, ws: WorkspaceId) {
        let Some(w) = self.table.workspaces.get(&ws) else {
            return;
        };
        let hz = crate::persist::clock_ticks_per_second();
        let age_ms = super::workspaces::unix_ms().saturating_sub(w.created_unix_ms);
        let created_ticks = crate::persist::boottime_ticks().saturating_sub(age_ms * hz / 1000);
        let me = std::process::id() as i32;
        let orphans: Vec<ProcStat> = match self.procs.orphans() {
            Some(orphans) => orphans.to_vec(),
            None => sessions::all()
                .into_iter()
                .filter(|p| p.ppid == me && !p.is_zombie() && !self.procs.holds(p.pid))
                .collect(),
        };
        // One tick of slack: the creation time is wall-clock milliseconds, the start
        // times are ticks of another clock.
        let pids: Vec<String> = orphans
            .into_iter()
            .filter(|p| p.start_ticks + 1 >= created_ticks)
            .map(|p| p.pid.to_string())
            .collect();
        if pids.is_empty() {
            return;
        }
        let message = format!(
            "workspace {} stopped without a cgroup; process(es) {}, started since it was \
             created and now children of arje, belong to no command: if they came from \
             it, they left their command's session and escaped the stop",
            w.spec.name,
            pids.join(", ")
        );
        log::warn!("{message}");
        self.event(EventKind::Warning { message });
    }
}

/// Has the process behind `pidfd` exited (a pidfd polls readable from then on)?
fn exited(pidfd: std::os::fd::BorrowedFd<'_>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&zero)).is_ok_and(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, ppid: i32, sid: i32) -> ProcStat {
        ProcStat {
            pid,
            state: 'S',
            ppid,
            pgid: pid,
            sid,
            start_ticks: 1,
        }
    }

    #[test]
    fn test_attributable_session_members_and_descendants_that_left() {
        // 10 leads the session; 11 is in it (another group); 12 left it (setsid) while
        // its parent 11 lives, and 13 is 12's child; 20 is unrelated.
        let procs = [
            p(10, 1, 10),
            p(11, 1, 10),
            p(12, 11, 12),
            p(13, 12, 12),
            p(20, 1, 20),
        ];

        let (found, left) = attributable(&procs, 10);

        let pids = |v: &[ProcStat]| v.iter().map(|p| p.pid).collect::<Vec<_>>();
        assert_eq!(pids(&found), vec![11, 12, 13]);
        assert_eq!(pids(&left), vec![12, 13]);
    }
}
