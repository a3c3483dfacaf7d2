//! One command at a time, by hand: `shuma start|stop|restart|reload|kill
//! WORKSPACE/NAME` (`Request::Control`, protocol version 5), without re-creating the
//! workspace. systemd's meaning, as docs/CLI.md says:
//!
//! - start: a command that ended for good (stopped, exited, failed) starts with a clean
//!   failure record, waiting for its `after` dependencies as at creation; one that runs,
//!   waits to start or waits out a restart's backoff is left alone (the backoff is cut
//!   short);
//! - stop: its stop signal and grace, and it stays stopped; what `requires` it is stopped
//!   too once it has ended (`deps.rs`);
//! - restart: stop, then start once it has exited; what requires it keeps running;
//! - reload: SIGHUP (cards have no reload command yet);
//! - kill: a signal to the run's process group and its main process, the same processes
//!   its stop signal reaches first; a process that left the group (a daemon that forked
//!   into a session of its own) is not reached.

use std::time::Instant;

use shuma_card::protocol::{CmdAction, ErrorCode, Response, WsState};

use super::requests::Reply;
use super::{Lifecycle, Runtime};
use crate::ids::CommandId;
use crate::supervise::{Event, State};

type ReqError = (ErrorCode, String);

impl Runtime {
    /// `Request::Control`: act on `workspace/command`, answering once the change is in
    /// the /run snapshot (for a stop or restart: once the stop signal is sent).
    pub(crate) fn control(
        &mut self,
        workspace: &str,
        command: &str,
        action: CmdAction,
    ) -> Result<Reply, ReqError> {
        let w = self
            .table
            .named(workspace)
            .ok_or_else(|| (ErrorCode::NotFound, format!("no workspace {workspace}")))?;
        let id = *w.by_name.get(command).ok_or_else(|| {
            (
                ErrorCode::NotFound,
                format!("no command {command} in workspace {workspace}"),
            )
        })?;
        if w.state != WsState::Running || self.life != Lifecycle::Running {
            return Err((
                ErrorCode::Invalid,
                format!("workspace {workspace} is stopping"),
            ));
        }
        let now = Instant::now();
        let name = format!("{workspace}/{command}");
        match action {
            CmdAction::Start => self.start_by_hand(id, now),
            CmdAction::Stop => self.stop_by_hand(id, now),
            CmdAction::Restart => self.restart_by_hand(id, now),
            CmdAction::Reload => self.signal_by_hand(id, &name, libc::SIGHUP)?,
            CmdAction::Kill { signal } => {
                if !(1..=64).contains(&signal) {
                    return Err((
                        ErrorCode::Invalid,
                        format!("signal {signal} is not between 1 and 64"),
                    ));
                }
                self.signal_by_hand(id, &name, signal)?
            }
        }
        // A start that could not spawn, or whose required dependency is down, failed at
        // once: say so rather than `Ok`.
        if matches!(action, CmdAction::Start | CmdAction::Restart) {
            if let Some(State::Failed { reason }) =
                self.table.commands.get(&id).map(|c| &c.sup.state)
            {
                return Err((ErrorCode::Invalid, format!("{name} failed: {reason}")));
            }
        }
        Ok(Reply::Saved(vec![Response::Ok]))
    }

    /// Start a command that ended for good; leave alone one that runs or waits to.
    fn start_by_hand(&mut self, id: CommandId, now: Instant) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        match cmd.sup.state {
            // Stopping: a start asked for now comes once it has stopped.
            State::Stopping { .. } => cmd.start_queued = true,
            State::Backoff { .. } => {
                self.command_event(id, Event::Start, now);
            }
            State::Exited | State::Failed { .. } => {
                cmd.sup.rearm();
                cmd.reason = None;
                self.store.mark_dirty();
                self.table.pending.insert(id);
                self.deps_progress(now);
            }
            State::Idle | State::Running { .. } => {}
        }
    }

    /// Stop a command for good: no restart follows.
    fn stop_by_hand(&mut self, id: CommandId, now: Instant) {
        if let Some(cmd) = self.table.commands.get_mut(&id) {
            cmd.start_queued = false;
        }
        // One still waiting for its dependencies never starts: Idle to Exited.
        self.table.pending.remove(&id);
        self.command_event(id, Event::Stop { grace: None }, now);
    }

    /// Stop a live command and start it once it has exited; start any other.
    fn restart_by_hand(&mut self, id: CommandId, now: Instant) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        if cmd.sup.is_live() {
            cmd.start_queued = true;
            // Stopping for a failure of arje's: the stop makes it final, so the
            // failure's own restart does not come on top of this one.
            self.command_event(id, Event::Stop { grace: None }, now);
        } else {
            self.start_by_hand(id, now);
        }
    }

    /// `reload` and `kill`: only a running command has a process to signal.
    fn signal_by_hand(&mut self, id: CommandId, name: &str, signal: i32) -> Result<(), ReqError> {
        let running = self
            .table
            .commands
            .get(&id)
            .is_some_and(|c| c.run.is_some());
        if !running {
            return Err((ErrorCode::Invalid, format!("{name} is not running")));
        }
        self.signal_run(id, signal);
        Ok(())
    }

    /// After a run ended: the start a `restart` queued, unless the workspace or arje is
    /// stopping by now.
    pub(crate) fn start_if_queued(&mut self, id: CommandId, now: Instant) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        if !std::mem::take(&mut cmd.start_queued) {
            return;
        }
        let ws_running = self
            .table
            .workspaces
            .get(&cmd.ws)
            .is_some_and(|w| w.state == WsState::Running);
        if ws_running && self.life == Lifecycle::Running {
            self.start_by_hand(id, now);
        }
    }
}
