//! Dependencies, with systemd's meaning (docs/CARDS.md):
//! - `after`: a command starts once each command it is after has *settled*: become
//!   ready, or ended for good (a failure settles an ordering too, as in systemd). Start
//!   order follows; stop order is its reverse: a command is stopped only once nothing
//!   that is after it still runs.
//! - `requires`: if a required command fails or stops for good, the command is stopped
//!   (or, not started yet, never starts) with the reason. Without `after` it does not
//!   order the start, exactly like `Requires=`.
//! - `wants`: recorded and shown; it never propagates a failure.
//!
//! Commands waiting to start are in [`Table::pending`]; every change that can settle a
//! dependency (ready, a final state) re-examines them. Cross-workspace names
//! (`workspace/name`) wait for the other workspace to exist.
//!
//! Here too: `WaitReady` clients, answered once what they wait for is ready or failed.

use std::time::{Duration, Instant};

use shuma_card::protocol::{ErrorCode, Response, WsState};
use shuma_card::{CommandKind, DepRef};

use super::commands::Command;
use super::requests::Reply;
use super::Runtime;
use crate::control::Follow;
use crate::ids::{CommandId, ConnId, WorkspaceId};
use crate::supervise::{Event, State};

/// What a pending command should do now.
enum Verdict {
    /// Indices into `spec.after` of what it still waits for.
    Wait(Vec<u32>),
    Start,
    Fail(String),
}

/// Why a command counts as down for those that require it, if it does: failed, a
/// task that exited non-zero, or a service that ended.
fn down(c: &Command) -> Option<String> {
    match &c.sup.state {
        State::Failed { reason } => Some(format!("failed: {reason}")),
        State::Exited => match (c.spec.kind, c.sup.last_exit) {
            (CommandKind::Task, Some(s)) if s.success() => None,
            (CommandKind::Task, Some(s)) => Some(format!("exited: {s}")),
            (CommandKind::Task, None) => Some("never ran".into()),
            (CommandKind::Service, _) => Some("stopped".into()),
        },
        _ => None,
    }
}

/// Has `c` settled for those ordered after it: ready, or ended for good?
fn settled(c: &Command) -> bool {
    c.ready.ready || c.sup.is_final()
}

impl Runtime {
    /// The command `dep` names, seen from workspace `ws`: a card command (a `shuma run`
    /// one-shot is never a dependency).
    fn resolve(&self, ws: WorkspaceId, dep: &DepRef) -> Option<CommandId> {
        let w = match &dep.workspace {
            Some(name) => self.table.named(name)?,
            None => self.table.workspaces.get(&ws)?,
        };
        w.by_name.get(&dep.name).copied()
    }

    fn verdict(&self, id: CommandId) -> Verdict {
        let Some(cmd) = self.table.commands.get(&id) else {
            return Verdict::Fail("gone".into());
        };
        let mut waiting = Vec::new();
        for (i, dep) in cmd.spec.after.iter().enumerate() {
            let target = self.resolve(cmd.ws, dep);
            // A target not there (yet): another workspace still to be created.
            if !target
                .and_then(|t| self.table.commands.get(&t))
                .is_some_and(settled)
            {
                waiting.push(i as u32);
            }
        }
        for dep in &cmd.spec.requires {
            let down = self
                .resolve(cmd.ws, dep)
                .and_then(|t| self.table.commands.get(&t))
                .and_then(down);
            if let Some(why) = down {
                return Verdict::Fail(format!("required {dep} {why}"));
            }
        }
        if waiting.is_empty() {
            Verdict::Start
        } else {
            Verdict::Wait(waiting)
        }
    }

    /// Start what may start, fail what cannot, until nothing changes. Returns the
    /// commands that could not be spawned, with why (for `ws create`'s answer).
    pub(crate) fn deps_progress(&mut self, now: Instant) -> Vec<(CommandId, String)> {
        // A start can make another command ready at once (`ready = started`), which
        // calls back here: the outer call's loop picks that up instead of recursing.
        if self.table.deps_running {
            self.table.deps_again = true;
            return Vec::new();
        }
        self.table.deps_running = true;
        let mut failed = Vec::new();
        loop {
            self.table.deps_again = false;
            let pending: Vec<CommandId> = self.table.pending.iter().copied().collect();
            for id in pending {
                match self.verdict(id) {
                    Verdict::Wait(list) => {
                        if let Some(c) = self.table.commands.get_mut(&id) {
                            if c.waiting_for != list {
                                c.waiting_for = list;
                            }
                        }
                    }
                    Verdict::Start => {
                        self.table.pending.remove(&id);
                        if let Some(c) = self.table.commands.get_mut(&id) {
                            c.waiting_for.clear();
                        }
                        if let Err(why) = self.start_command(id, now) {
                            failed.push((id, why));
                        }
                    }
                    Verdict::Fail(reason) => {
                        self.table.pending.remove(&id);
                        if let Some(c) = self.table.commands.get_mut(&id) {
                            c.waiting_for.clear();
                        }
                        self.command_event(
                            id,
                            Event::Fail {
                                reason,
                                signal: libc::SIGTERM,
                                restart: false,
                            },
                            now,
                        );
                    }
                }
            }
            if !self.table.deps_again {
                break;
            }
        }
        self.table.deps_running = false;
        failed
    }

    /// `id` ended for good: stop what requires it (unless its whole workspace is
    /// stopping anyway), then let what is after it go on.
    pub(crate) fn deps_on_final(&mut self, id: CommandId, now: Instant) {
        let Some(cmd) = self.table.commands.get(&id) else {
            return;
        };
        // A one-shot is never a dependency; in a shutdown everything stops anyway (and a
        // scan per exit would cost the square of the command count).
        if cmd.adhoc || self.life != super::Lifecycle::Running {
            return;
        }
        if let Some(why) = down(cmd) {
            let dependents: Vec<(CommandId, String)> = self
                .table
                .commands
                .iter()
                .filter(|(_, c)| !c.spec.requires.is_empty() && c.sup.is_live())
                .filter(|(_, c)| {
                    self.table
                        .workspaces
                        .get(&c.ws)
                        .is_some_and(|w| w.state == WsState::Running)
                })
                .filter_map(|(d, c)| {
                    let dep = c
                        .spec
                        .requires
                        .iter()
                        .find(|r| self.resolve(c.ws, r) == Some(id))?;
                    Some((*d, format!("required {dep} {why}")))
                })
                .collect();
            for (d, reason) in dependents {
                let signal = self
                    .table
                    .commands
                    .get(&d)
                    .map_or(libc::SIGTERM, |c| c.spec.stop_signal);
                self.command_event(
                    d,
                    Event::Fail {
                        reason,
                        signal,
                        restart: false,
                    },
                    now,
                );
            }
        }
        self.deps_progress(now);
        self.waiters_progress();
    }

    /// Send the stop to each command of a stopping workspace that nothing running is
    /// `after` any more: the reverse of the start order.
    ///
    /// Linear in the workspace's commands per pass; a stop that finishes at once (a
    /// command in backoff) comes back here through `workspace_progress`, which the
    /// `stop_running` flag turns into another pass of the loop instead of a recursion.
    pub(crate) fn stop_progress(&mut self, ws: WorkspaceId) {
        if self.table.stop_running {
            self.table.stop_again = true;
            return;
        }
        self.table.stop_running = true;
        loop {
            self.table.stop_again = false;
            let Some(w) = self.table.workspaces.get(&ws) else {
                break;
            };
            let commands = &self.table.commands;
            let members = || w.commands.iter().filter_map(|id| commands.get(id));
            // The names that a command still running is after: those wait.
            let held: std::collections::HashSet<&str> = members()
                .filter(|c| c.busy())
                .flat_map(|c| c.spec.after.iter())
                .filter(|d| d.workspace.is_none())
                .map(|d| d.name.as_str())
                .collect();
            let due: Vec<(CommandId, Option<Duration>)> = members()
                .filter_map(|c| {
                    let grace = c.stop_queued?;
                    let waits = !c.adhoc && held.contains(c.spec.name.as_str());
                    (!waits).then_some((c.id, grace))
                })
                .collect();
            let now = Instant::now();
            for (id, grace) in due {
                if let Some(c) = self.table.commands.get_mut(&id) {
                    c.stop_queued = None;
                }
                self.command_event(id, Event::Stop { grace }, now);
            }
            if !self.table.stop_again {
                break;
            }
        }
        self.table.stop_running = false;
    }

    /// `WaitReady`: answered now if it can be, else the connection follows it.
    pub(crate) fn wait_ready(
        &mut self,
        workspace: &str,
        command: Option<&str>,
        timeout_ms: Option<u64>,
    ) -> Result<Reply, (ErrorCode, String)> {
        let Some(w) = self.table.named(workspace) else {
            return Err((ErrorCode::NotFound, format!("no workspace {workspace}")));
        };
        let ws = w.id;
        let only = match command {
            None => None,
            Some(c) => {
                let by_name = w.commands.iter().copied().find(|id| {
                    self.table
                        .commands
                        .get(id)
                        .is_some_and(|cmd| cmd.spec.name == c)
                });
                let by_id = c
                    .parse::<u64>()
                    .ok()
                    .map(CommandId::from)
                    .filter(|id| w.commands.contains(id));
                match by_name.or(by_id) {
                    Some(id) => Some(id),
                    None => {
                        return Err((
                            ErrorCode::NotFound,
                            format!("no command {c} in workspace {workspace}"),
                        ))
                    }
                }
            }
        };
        if let Some(resp) = self.ready_verdict(ws, only, false) {
            return Ok(Reply::Frames(vec![resp]));
        }
        Ok(Reply::Follow {
            frames: Vec::new(),
            follow: Follow::Ready {
                ws,
                command: only,
                // A client's number: past what an Instant holds means no deadline, never
                // an overflow.
                deadline: timeout_ms
                    .and_then(|t| Instant::now().checked_add(Duration::from_millis(t))),
            },
        })
    }

    /// Answer the `WaitReady` clients whose wait is over.
    pub(crate) fn waiters_progress(&mut self) {
        let conns = self.server.followers(|f| matches!(f, Follow::Ready { .. }));
        for conn in conns {
            self.waiter_check(conn, false);
        }
    }

    /// End every `WaitReady` wait with `why` (before a re-exec).
    pub(crate) fn interrupt_waiters(&mut self, why: &str) {
        let conns = self.server.followers(|f| matches!(f, Follow::Ready { .. }));
        for conn in conns {
            self.server.set_follow(conn, Follow::None);
            let resp = Response::Error {
                code: ErrorCode::Internal,
                message: why.to_string(),
            };
            self.server.deliver(&self.reactor, conn, &[resp]);
        }
    }

    /// A `WaitReady` timeout may be due.
    pub(crate) fn on_wait_ready_timer(&mut self, conn: ConnId) {
        self.waiter_check(conn, true);
    }

    fn waiter_check(&mut self, conn: ConnId, timer: bool) {
        let Some(Follow::Ready {
            ws,
            command,
            deadline,
        }) = self.server.follow_of(conn)
        else {
            return;
        };
        let timed_out = timer && deadline.is_some_and(|d| d <= Instant::now());
        if let Some(resp) = self.ready_verdict(ws, command, timed_out) {
            self.server.set_follow(conn, Follow::None);
            self.server.deliver(&self.reactor, conn, &[resp]);
        }
    }

    /// `Ok` when every command waited for is ready, `NotReady` naming the first that
    /// failed (or, `timed_out`, those still not ready), `None` while the wait goes on.
    fn ready_verdict(
        &self,
        ws: WorkspaceId,
        command: Option<CommandId>,
        timed_out: bool,
    ) -> Option<Response> {
        let not_ready = |message: String| Response::Error {
            code: ErrorCode::NotReady,
            message,
        };
        let Some(w) = self.table.workspaces.get(&ws) else {
            return Some(not_ready("the workspace is gone".into()));
        };
        let targets: Vec<&Command> = w
            .commands
            .iter()
            .filter(|c| command.is_none_or(|only| **c == only))
            .filter_map(|c| self.table.commands.get(c))
            .filter(|c| command.is_some() || !c.adhoc)
            .collect();
        let mut waiting = Vec::new();
        for c in &targets {
            if c.ready.ready && (c.spec.kind == CommandKind::Task || c.run.is_some()) {
                continue;
            }
            let name = format!("{}/{}", c.workspace, c.spec.name);
            if let Some(why) = &c.ready.not_ready {
                return Some(not_ready(format!("{name} is not ready: {why}")));
            }
            if let State::Failed { reason } = &c.sup.state {
                return Some(not_ready(format!("{name} failed: {reason}")));
            }
            if c.sup.is_final() {
                let how = c.sup.last_exit.map_or("stopped".into(), |s| s.to_string());
                return Some(not_ready(format!(
                    "{name} ended before it was ready: {how}"
                )));
            }
            let mut what = name;
            if !c.waiting_for.is_empty() {
                what += &format!(" (waiting for {})", c.waiting_names().join(", "));
            }
            waiting.push(what);
        }
        if waiting.is_empty() {
            return Some(Response::Ok);
        }
        if w.state != WsState::Running {
            return Some(not_ready(format!("workspace {} is stopping", w.spec.name)));
        }
        timed_out.then(|| not_ready(format!("timed out; not ready: {}", waiting.join(", "))))
    }
}
