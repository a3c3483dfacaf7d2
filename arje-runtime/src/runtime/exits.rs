//! Exits: a command's pidfd or a SIGCHLD says a process ended; it is reaped once (see
//! `procs.rs` for the two paths), its last output drained, its exit journalled, `run
//! --wait` clients answered, and the supervisor told.

use std::os::fd::AsFd;
use std::time::Instant;

use shuma_card::protocol::{ErrorCode, Response};
use shuma_card::{EventKind, ExitStatus};

use super::procs::PidfdExit;
use super::Runtime;
use crate::control::Follow;
use crate::ids::CommandId;
use crate::supervise::Event;
use crate::timers::TimerAction;

impl Runtime {
    /// A command's pidfd is readable: its process exited (or one of its stragglers, see
    /// `stop.rs`). If the orphan scan got to it first, `run` is already gone and there is
    /// nothing to do.
    pub(crate) fn on_child(&mut self, id: CommandId) {
        self.reap_stragglers(id);
        let Some(cmd) = self.table.commands.get(&id).filter(|c| c.run.is_some()) else {
            return;
        };
        if matches!(cmd.sup.state, crate::supervise::State::Stopping { .. }) {
            // Unreaped, the run still pins its session id: the last chance to find what
            // it forked since the stop signal.
            let signal = cmd.spec.stop_signal;
            self.sweep_session(id, signal);
        }
        let Some(run) = self.table.commands.get(&id).and_then(|c| c.run.as_ref()) else {
            return;
        };
        let pid = run.pid;
        match self
            .procs
            .reap_pidfd(pid, run.pidfd.as_fd(), run.start_time_ticks)
        {
            PidfdExit::NotYet => {}
            PidfdExit::Exited(status) => self.on_exit(pid, status),
            PidfdExit::Unknown(message) => {
                log::warn!("{message}");
                self.event(EventKind::Warning { message });
                self.on_exit(pid, ExitStatus::Signal(0));
            }
        }
    }

    /// A SIGCHLD record arrived (see `procs.rs` for the rule).
    pub(crate) fn on_sigchld(&mut self, pid: i32) {
        match self.procs.on_sigchld(pid) {
            super::procs::Scan::Now => self.reap_orphans(),
            super::procs::Scan::Later => {
                self.timers.add_once(
                    Instant::now() + super::procs::ORPHAN_SCAN_DELAY,
                    TimerAction::OrphanScan,
                );
            }
        }
    }

    /// Reap every child that has exited: orphans, and any command whose pidfd event has
    /// not been handled yet (reported once either way).
    pub(crate) fn reap_orphans(&mut self) {
        for (pid, status) in self.procs.reap_all() {
            self.on_exit(pid, status);
        }
    }

    fn on_exit(&mut self, pid: i32, mut status: ExitStatus) {
        if let Some(id) = self.procs.probe_exited(pid) {
            self.on_probe_exit(id, status);
            return;
        }
        let Some(id) = self.procs.exited(pid) else {
            self.straggler_reaped(pid);
            return;
        };
        // A forking daemon may have named its successor (MAINPID=) just before the
        // parent exited: read what it sent before deciding that the service ended.
        self.on_notify_final(id);
        if self
            .table
            .commands
            .get(&id)
            .and_then(|c| c.run.as_ref())
            .is_some_and(|r| r.pid != pid)
        {
            return;
        }
        let now = Instant::now();
        // Reaped by the orphan scan rather than through its pidfd (`on_child`): the last
        // look for what the run forked since the stop signal happens here instead. A
        // session id stays allocated while any process of the session lives, so the
        // reaped leader's pid still names only its session.
        if let Some(cmd) = self.table.commands.get(&id) {
            if matches!(cmd.sup.state, crate::supervise::State::Stopping { .. }) {
                let signal = cmd.spec.stop_signal;
                self.sweep_session(id, signal);
            }
        }
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        let run = cmd.run.take();
        // A SIGKILL from the kernel's OOM killer looks like any SIGKILL; the leaf's
        // memory.events says whether it was one. Read before the leaf is removed.
        if let (ExitStatus::Signal(9), Some(run)) = (status, run.as_ref()) {
            // The leaf outlives a run: count only this run's kills.
            if let Some(leaf) = &run.leaf {
                if leaf
                    .memory_events()
                    .is_ok_and(|m| m.oom_kill > run.oom_kills_base)
                {
                    status = ExitStatus::OomKilled;
                }
            }
        }
        // A stop ends the whole run (`kill_mode = "control-group"`): what is left in its
        // leaf when the main process has exited got the stop signal with it and had as
        // long; it goes now, as systemd's stop of a unit ends its cgroup. (An exit that
        // is not a stop leaves them: a daemon that forked away from its task lives on.)
        if matches!(cmd.sup.state, crate::supervise::State::Stopping { .. })
            && cmd.spec.kill_mode == shuma_card::KillMode::ControlGroup
        {
            if let Some(leaf) = run.as_ref().and_then(|r| r.leaf.as_ref()) {
                if leaf.populated().unwrap_or(false) {
                    if let Err(e) = leaf.kill() {
                        log::warn!("{e}");
                    }
                }
            }
        }
        let (ws, workspace, name) = (cmd.ws, cmd.workspace.clone(), cmd.spec.name.clone());
        // What the process wrote before it exited is in its pipes now: read it before
        // anyone learns of the exit, so `run --wait` then `logs` sees all of it.
        for p in cmd.pipe_ids.clone() {
            self.on_log(p);
        }
        for w in run.as_ref().map_or(&[][..], |r| &r.watch_ids) {
            if let Some(report) = self.cgroups.remove(&self.reactor, *w) {
                self.on_cgroup_news(super::watches::News::Report(report));
            }
        }
        // The leaf stays for the command's next run (a restart, a rerun): a mkdir and
        // rmdir per run cost more than the spawn itself in the guest benchmark. It goes
        // when the command is pruned or the workspace removed.
        self.event(EventKind::CommandExited {
            workspace,
            command: name.clone(),
            pid,
            status,
        });
        if status == ExitStatus::OomKilled {
            self.on_oom(ws, &name);
        }
        self.ready_on_exit(id, status);
        self.probe_on_exit(id);
        self.notify_exit(id, Some(status));
        self.command_event(id, Event::Exited { status }, now);
        self.waiters_progress();
    }

    /// Answer `run --wait` clients of this command.
    pub(crate) fn notify_exit(&mut self, id: CommandId, status: Option<ExitStatus>) {
        for conn in self.server.followers(|f| *f == Follow::Exit(id)) {
            let resp = match status {
                Some(status) => Response::Exited {
                    id: id.raw(),
                    status,
                },
                None => Response::Error {
                    code: ErrorCode::Internal,
                    message: self
                        .table
                        .commands
                        .get(&id)
                        .and_then(|c| c.info().reason)
                        .unwrap_or_else(|| "could not start".into()),
                },
            };
            self.server.set_follow(conn, Follow::None);
            self.server.deliver(&self.reactor, conn, &[resp]);
        }
    }
}
