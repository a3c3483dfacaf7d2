//! What survives: encoding the snapshot from the live state, and restoring from it at
//! start.
//!
//! On start: the /run snapshot of this boot (a re-exec, or a crash restart) adopts the
//! processes still running, checking each pid's start time so a recycled pid is never
//! taken for ours; otherwise the durable copy (a reboot) recreates the workspaces with
//! their limits and starts their services again, without rerunning finished tasks.

use std::os::fd::{AsFd, RawFd};
use std::time::{Duration, Instant};

use shuma_card::protocol::WsState;
use shuma_card::snapshot::{LiveProcess, SavedExitStatus, SavedStatsSample, WorkspaceState};
use shuma_card::{CommandKind, CommandSpec, EventKind};

use super::commands::{Command, Run};
use super::reactor::Interest;
use super::strays::Pending;
use super::workspaces::{unix_ms, Workspace};
use super::Runtime;
use crate::ids::{CommandId, WorkspaceId};
use crate::persist::{self, Loaded, Source};
use crate::supervise::State;
use crate::timers::TimerAction;
use crate::token::Token;

/// Newest stats samples per workspace kept in the snapshot. The loop keeps more in
/// memory (`STATS_HISTORY`), but the snapshot is written every turn: at 60 samples the
/// history was 1.56 MB of a 2.0 MB snapshot of 1,000 workspaces and the write took 3.1 ms
/// instead of 0.64 ms (`cargo run --release -p arje-bench --bin snapshot`).
pub const SNAPSHOT_STATS: usize = 8;

/// What the loaded state means for this start, decided before anything is built.
pub struct RestorePlan {
    /// Adopt the recorded processes (same boot).
    pub adopt: bool,
    /// A re-exec of this very process: the listener and connections are inherited.
    pub reexec: bool,
    pub inherited_listener: Option<RawFd>,
    /// The journal continues from here (ids are never reused).
    pub next_event_id: u64,
}

pub fn plan(loaded: &Loaded) -> RestorePlan {
    let Some(snap) = &loaded.snapshot else {
        return RestorePlan {
            adopt: false,
            reexec: false,
            inherited_listener: None,
            next_event_id: 1,
        };
    };
    let adopt = loaded.source == Source::Run && persist::same_boot(snap);
    let reexec = adopt && snap.arje_pid == std::process::id() as i32;
    RestorePlan {
        adopt,
        reexec,
        inherited_listener: snap.listener_fd.filter(|_| reexec),
        next_event_id: snap.next_event_id,
    }
}

/// The Instant that was `ms` of wall clock ago.
fn instant_of_unix_ms(ms: u64, now: Instant, now_unix: u64) -> Instant {
    now.checked_sub(Duration::from_millis(now_unix.saturating_sub(ms)))
        .unwrap_or(now)
}

fn unix_ms_of_instant(t: Instant, now: Instant, now_unix: u64) -> u64 {
    now_unix.saturating_sub(now.saturating_duration_since(t).as_millis() as u64)
}

impl Runtime {
    /// Encode the state into the store's buffer from borrowed parts: no `Snapshot` value
    /// is built and no spec is cloned; each workspace's spec is encoded once and cached
    /// (`Workspace::spec_bytes`). With `for_reexec`, the fds the next image takes over
    /// (the listener, each live run's output pipes) are recorded too.
    pub(crate) fn encode_snapshot(&mut self, for_reexec: bool) {
        use shuma_card::snapshot::{encode_parts, CommandParts, SnapshotHead, WorkspaceParts};
        let now = Instant::now();
        let now_unix = unix_ms();
        // Pipelines are few and small: their saved forms are built here, not cached.
        let saved_pipelines: Vec<shuma_card::snapshot::SavedPipelineSpec> = self
            .table
            .saved_pipelines
            .values()
            .map(Into::into)
            .collect();
        // Built only for the workspaces that have pipelines: this runs on every turn that
        // changed something, and most workspaces have none.
        let pipeline_states: std::collections::HashMap<_, Vec<_>> = self
            .table
            .workspaces
            .values()
            .filter(|ws| !ws.pipelines.is_empty())
            .map(|ws| {
                let states = ws
                    .pipelines
                    .iter()
                    .filter_map(|id| self.table.pipelines.get(id))
                    .map(|p| p.saved_state(now, now_unix))
                    .collect();
                (ws.id, states)
            })
            .collect();
        let head = SnapshotHead {
            written_unix_ms: now_unix,
            boot_id: &self.store.boot_id,
            arje_pid: self.store.own_pid,
            next_event_id: self.journal.next_id(),
            next_command_id: self.table.command_ids.peek(),
            next_workspace_id: self.table.workspace_ids.peek(),
            listener_fd: for_reexec.then(|| self.server.listener_fd()),
            saved_pipelines: &saved_pipelines,
        };
        let commands = &self.table.commands;
        let capture = &self.capture;
        // The read end of a command's stdout (false) or stderr (true) pipe, for a re-exec.
        let pipe_fd = move |c: &Command, is_err: bool| {
            capture.fd_of(&c.pipe_ids, is_err).filter(|_| for_reexec)
        };
        let workspaces = self.table.workspaces.values().map(|ws| WorkspaceParts {
            pipelines: pipeline_states.get(&ws.id).map_or(&[], Vec::as_slice),
            id: ws.id.raw(),
            spec_bytes: &ws.spec_bytes,
            created_unix_ms: ws.created_unix_ms,
            stopping: ws.state != WsState::Running,
            commands: ws
                .commands
                .iter()
                // Every id of a workspace is in the command table (they are inserted and
                // removed together); indexing keeps the iterator's exact length, so the
                // encoder writes the count first instead of shifting the bytes after.
                .map(move |id| &commands[id])
                .map(move |c| CommandParts {
                    id: c.id.raw(),
                    name: &c.spec.name,
                    restarts: c.sup.restarts,
                    recent_restarts_unix_ms: c
                        .sup
                        .recent_restarts
                        .iter()
                        .map(move |t| unix_ms_of_instant(*t, now, now_unix)),
                    last_exit: c.sup.last_exit,
                    done: c.spec.kind == CommandKind::Task && c.sup.is_final(),
                    failed: match &c.sup.state {
                        State::Failed { reason } => Some(reason.as_str()),
                        _ => None,
                    },
                    live: c.run.as_ref().map(|r| LiveProcess {
                        pid: r.pid,
                        start_time_ticks: r.start_time_ticks,
                        started_unix_ms: r.started_unix_ms,
                        stdout_fd: pipe_fd(c, false),
                        stderr_fd: pipe_fd(c, true),
                    }),
                    ready: c.ready.ready,
                    status: c.ready.status.as_deref(),
                    // The command's readiness channel: its notify socket, or the read end
                    // of its s6 notification pipe (a command has one or the other).
                    notify_fd: c
                        .ready
                        .notify
                        .as_ref()
                        .map(|n| &n.fd)
                        .or(c.ready.fd.as_ref())
                        .map(std::os::fd::AsRawFd::as_raw_fd)
                        .filter(|_| for_reexec),
                }),
            stats: ws
                .stats
                .iter()
                .skip(ws.stats.len().saturating_sub(SNAPSHOT_STATS)),
        });
        encode_parts(&head, workspaces, &mut self.store.buf);
    }

    /// Restore what `loaded` holds. Called once, from `new`, before the cards are loaded.
    /// The journal already continues from the snapshot's next id, so the warnings about
    /// set-aside files land in it (and stay there). With cgroups, and unless this is a
    /// re-exec, the tree is then swept for what the snapshot lacks (`strays.rs`) before
    /// any command starts.
    pub(crate) fn restore(&mut self, loaded: Loaded, plan: RestorePlan) {
        for (path, why) in &loaded.set_aside {
            let message = format!("snapshot set aside as {}: {why}", path.display());
            log::error!("{message}");
            self.event(EventKind::Warning { message });
        }
        let now = Instant::now();
        let now_unix = unix_ms();
        let mut pending = Vec::new();
        let mut recorded = 0;
        if let Some(snap) = loaded.snapshot {
            recorded = snap.next_command_id;
            log::info!(
                "state: {} workspace(s) from the {} copy, written {} ms ago ({})",
                snap.workspaces.len(),
                if loaded.source == Source::Run {
                    "/run"
                } else {
                    "durable"
                },
                unix_ms().saturating_sub(snap.written_unix_ms),
                if plan.reexec {
                    "re-exec: adopting children"
                } else if plan.adopt {
                    "crash restart: adopting what still runs"
                } else {
                    "reboot: starting afresh"
                }
            );
            self.table
                .command_ids
                .skip_past(snap.next_command_id.saturating_sub(1));
            self.table
                .workspace_ids
                .skip_past(snap.next_workspace_id.saturating_sub(1));
            self.table.saved_pipelines = snap
                .saved_pipelines
                .into_iter()
                .map(|p| (p.name.clone(), p.into_card()))
                .collect();
            for ws in snap.workspaces {
                pending.push(self.restore_workspace(ws, plan.adopt, now, now_unix));
            }
        }
        if !plan.reexec && self.cgroups.tree.is_enabled() {
            self.sweep_strays(&mut pending, recorded, now);
        }
        let mut starting = Vec::new();
        for p in pending {
            if p.stopping {
                self.stop_workspace(p.id, None, false);
                continue;
            }
            // Started in dependency order again, as at creation.
            self.table.pending.extend(p.to_start);
            starting.extend(p.pipelines);
        }
        self.deps_progress(now);
        for id in starting {
            self.pipeline_start(id, now);
        }
    }

    /// Put one saved workspace back in the table, adopting its recorded processes that
    /// still run. What it still has to do (start commands, or finish stopping) is
    /// returned, done by [`Runtime::restore`] after the sweep.
    fn restore_workspace(
        &mut self,
        state: WorkspaceState,
        adopt: bool,
        now: Instant,
        now_unix: u64,
    ) -> Pending {
        let spec = state.spec.into_card();
        let name = spec.name.clone();
        let tree = &self.cgroups.tree;
        let cgroup = if tree.is_enabled() {
            let existing = adopt.then(|| tree.open_workspace(&name).ok()).flatten();
            let created = || match tree.create_workspace(&name, &spec.limits) {
                // Left by an arje that crashed after the snapshot this start read was
                // written (its /run copy lost): reuse it, with the saved limits.
                Err(crate::cgroup::CgroupError::CreateCgroup { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    tree.reopen_workspace(&name, &spec.limits)
                }
                other => other.map(|(cg, _)| cg),
            };
            match existing.map(Ok).unwrap_or_else(created) {
                Ok(cg) => Some(cg),
                Err(e) => {
                    log::error!("restore workspace {name}: {e}; running it without a cgroup");
                    None
                }
            }
        } else {
            None
        };
        // The saved id, so an id is never reused across a re-exec or a reboot either.
        let id = WorkspaceId::from(state.id);
        self.table.workspace_ids.skip_past(state.id);
        let unenforced = tree.unenforced(&spec.limits);
        let mut ws = Workspace::new(id, spec, state.created_unix_ms, cgroup, unenforced);
        ws.stats = state
            .stats
            .into_iter()
            .map(SavedStatsSample::into_protocol)
            .collect();
        let mut to_start = Vec::new();
        let mut resume = Vec::new();
        for cs in state.commands {
            let cid = CommandId::from(cs.id);
            self.table.command_ids.skip_past(cs.id);
            let node = super::pipelines::find_node(&ws.spec, &cs.name);
            let declared = ws
                .spec
                .commands
                .iter()
                .find(|c| c.name == cs.name)
                .cloned()
                .or_else(|| node.clone());
            let adhoc = declared.is_none();
            // An ad-hoc `shuma run`: its declaration is not in the card.
            let spec = declared.unwrap_or_else(|| {
                CommandSpec::new(cs.name.clone(), CommandKind::Task, Vec::new())
            });
            let mut cmd = Command::new(cid, id, &name, spec);
            cmd.adhoc = adhoc;
            cmd.sup.restarts = cs.restarts;
            cmd.sup.last_exit = cs.last_exit.map(SavedExitStatus::into_event);
            cmd.sup.recent_restarts = cs
                .recent_restarts_unix_ms
                .iter()
                .map(|t| instant_of_unix_ms(*t, now, now_unix))
                .collect();
            let adopted = match (adopt, cs.live) {
                (true, Some(live)) => {
                    let leaf = ws.cgroup.as_ref().and_then(|cg| {
                        cg.open_leaf(&super::commands::leaf_name(cid, &cmd.spec.name))
                            .ok()
                    });
                    self.adopt_process(&mut cmd, id, leaf, live, now, now_unix)
                }
                _ => false,
            };
            // A process that still runs is as ready as it was; a task that ran to success
            // stays ready (it is not run again).
            cmd.ready.ready = if adopted {
                cs.ready
            } else {
                cs.done && cmd.sup.last_exit.is_some_and(|s| s.success())
            };
            cmd.ready.status = cs.status.clone();
            cmd.ready.uid = super::creds::resolve(&cmd.spec)
                .ok()
                .flatten()
                .map_or_else(|| rustix::process::geteuid().as_raw(), |c| c.0);
            // A re-exec hands the notify socket over: the service keeps its
            // NOTIFY_SOCKET. (After a crash restart the socket is gone with the old
            // process; an adopted notify service is then judged by what it said before.)
            let channel = cs.notify_fd.and_then(crate::sys::fd::adopt);
            let is_pipe = channel.as_ref().is_some_and(|fd| {
                rustix::fs::fstat(fd).is_ok_and(|st| {
                    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Fifo
                })
            });
            if let (Some(fd), true) = (&channel, is_pipe) {
                // An s6 notification pipe whose newline has not come yet.
                match self
                    .reactor
                    .add(fd.as_fd(), Token::ReadyFd(cid), Interest::Read)
                {
                    Ok(()) => cmd.ready.fd = channel,
                    Err(e) => log::warn!("notification fd of {name}/{}: epoll: {e}", cs.name),
                }
            } else if let Some(fd) = channel {
                match super::notify::NotifySocket::adopt(fd) {
                    Ok(sock) => {
                        if let Err(e) =
                            self.reactor
                                .add(sock.fd.as_fd(), Token::Notify(cid), Interest::Read)
                        {
                            log::warn!("notify socket of {name}/{}: epoll: {e}", cs.name);
                        }
                        cmd.ready.notify = Some(sock);
                    }
                    Err(e) => log::warn!("notify socket of {name}/{}: {e}", cs.name),
                }
            }
            if adopted {
                resume.push(cid);
            }
            if !adopted {
                if let Some(reason) = cs.failed {
                    cmd.sup.state = State::Failed { reason };
                } else if cs.done
                    || (adopt && cs.live.is_none() && cmd.spec.kind == CommandKind::Task)
                    // A one-shot whose process is gone and whose argv we never stored.
                    || cmd.adhoc
                    // A pipeline starts its nodes itself, all together.
                    || node.is_some()
                {
                    cmd.sup.state = State::Exited;
                } else {
                    to_start.push(cid);
                }
            }
            ws.commands.insert(cid);
            if !cmd.adhoc && node.is_none() {
                ws.by_name.insert(cmd.spec.name.clone(), cid);
            }
            self.table.commands.insert(cid, cmd);
        }
        if let Some(ttl) = ws.spec.ttl_ms {
            let at = instant_of_unix_ms(ws.created_unix_ms + ttl, now, now_unix);
            self.timers.add(at.max(now), TimerAction::WorkspaceTtl(id));
        }
        self.insert_workspace(ws);
        for cid in resume {
            self.ready_resume(cid, now);
        }
        let pipelines = self.restore_pipelines(id, state.pipelines, now, now_unix);
        Pending {
            id,
            stopping: state.stopping,
            to_start,
            pipelines,
        }
    }

    /// Take over a process recorded in the snapshot (or found in its command's `leaf`
    /// after a crash), if it is still the same process.
    pub(crate) fn adopt_process(
        &mut self,
        cmd: &mut Command,
        ws: WorkspaceId,
        leaf: Option<crate::cgroup::Leaf>,
        live: LiveProcess,
        now: Instant,
        now_unix: u64,
    ) -> bool {
        let Some(pid) = rustix::process::Pid::from_raw(live.pid) else {
            return false;
        };
        let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                log::warn!("adopt pid {}: pidfd_open: {e}", live.pid);
                return false;
            }
        };
        // Checked with the pidfd open: if the pid was recycled before pidfd_open, the
        // process it names started later than recorded and is refused here.
        if !persist::still_running(&live) {
            return false;
        }
        if let Err(e) = self
            .reactor
            .add(pidfd.as_fd(), Token::Child(cmd.id), Interest::Read)
        {
            log::warn!("adopt pid {}: epoll: {e}", live.pid);
            return false;
        }
        let (oom_base, watch_ids) = self.watch_leaf(ws, leaf.as_ref());
        let started = instant_of_unix_ms(live.started_unix_ms, now, now_unix);
        cmd.pipe_ids = [(live.stdout_fd, false), (live.stderr_fd, true)]
            .into_iter()
            .filter_map(|(fd, is_err)| Some((fd.and_then(crate::sys::fd::adopt)?, is_err)))
            .filter_map(|(fd, is_err)| self.capture.add(&self.reactor, cmd.id, is_err, fd))
            .collect();
        cmd.sup.started(started);
        cmd.run = Some(Run {
            pid: live.pid,
            pidfd,
            started,
            started_unix_ms: live.started_unix_ms,
            start_time_ticks: live.start_time_ticks,
            leaf,
            oom_kills_seen: oom_base,
            oom_kills_base: oom_base,
            watch_ids,
        });
        self.procs.track(live.pid, cmd.id);
        log::info!(
            "adopted {}/{} pid {}",
            cmd.workspace,
            cmd.spec.name,
            live.pid
        );
        true
    }
}
