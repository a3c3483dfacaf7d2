//! Workspaces: creating one with its cgroup and commands, stopping it, removing it.

use std::time::{Duration, Instant};

use shuma_card::protocol::{ErrorCode, WorkspaceInfo, WsState};
use shuma_card::{CommandKind, EventKind, WorkspaceSpec};

use super::{Command, Runtime, MAX_COMMANDS, MAX_WORKSPACES};
use crate::control::Follow;
use crate::supervise::Event;
use crate::timers::TimerAction;

pub struct Workspace {
    pub spec: WorkspaceSpec,
    /// `spec` encoded for the snapshot, cached until the spec changes.
    pub spec_bytes: Vec<u8>,
    pub created_unix_ms: u64,
    pub state: WsState,
    /// Command ids; ids grow, so this is creation order.
    pub commands: std::collections::BTreeSet<u64>,
    /// Finished `shuma run` one-shots, oldest first, for pruning.
    pub finished_runs: std::collections::VecDeque<u64>,
    pub cgroup: Option<crate::cgroup::WorkspaceCgroup>,
    /// Limits the card asks for that this host does not enforce.
    pub unenforced: Vec<String>,
    /// Recent cgroup statistics, oldest first, at most [`STATS_HISTORY`].
    pub stats: std::collections::VecDeque<shuma_card::protocol::StatsSample>,
}

/// Finished `shuma run` one-shots kept per workspace.
pub const KEEP_FINISHED_RUNS: usize = 64;
/// Samples of statistics kept per workspace.
pub const STATS_HISTORY: usize = 60;
/// How often statistics are sampled while any workspace has a cgroup.
pub const STATS_EVERY: Duration = Duration::from_secs(2);

impl Workspace {
    pub fn info(&self, rt: &Runtime) -> WorkspaceInfo {
        let running = self
            .commands
            .iter()
            .filter(|id| rt.commands.get(id).is_some_and(|c| c.run.is_some()))
            .count();
        WorkspaceInfo {
            name: self.spec.name.clone(),
            state: self.state.clone(),
            commands: self.commands.len() as u32,
            running: running as u32,
            limits: self.spec.limits.clone(),
            cgroup: self.cgroup.as_ref().map(|c| c.path().display().to_string()),
            created_unix_ms: self.created_unix_ms,
        }
    }
}

type ReqError = (ErrorCode, String);

impl Runtime {
    pub(crate) fn create_workspace_inner(
        &mut self,
        spec: WorkspaceSpec,
    ) -> Result<Vec<String>, ReqError> {
        shuma_card::card::validate(&spec).map_err(|e| (ErrorCode::Invalid, e))?;
        if self.stopping.is_some() {
            return Err((
                ErrorCode::Invalid,
                "shutting down: no new workspaces".into(),
            ));
        }
        if self.workspaces.contains_key(&spec.name) {
            return Err((
                ErrorCode::AlreadyExists,
                format!("workspace {} already exists", spec.name),
            ));
        }
        if self.workspaces.len() >= MAX_WORKSPACES {
            return Err((
                ErrorCode::Limit,
                format!("at most {MAX_WORKSPACES} workspaces"),
            ));
        }
        if self.commands.len() + spec.commands.len() > MAX_COMMANDS {
            return Err((ErrorCode::Limit, format!("at most {MAX_COMMANDS} commands")));
        }
        // Limits are written before anything runs in the workspace.
        let (cgroup, warnings) = if self.cgroups.is_enabled() {
            let (cg, warnings) = self
                .cgroups
                .create_workspace(&spec.name, &spec.limits)
                .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
            (Some(cg), warnings)
        } else {
            (None, self.cgroups.unenforced(&spec.limits))
        };
        let name = spec.name.clone();
        let mut ws = Workspace {
            spec_bytes: shuma_card::snapshot::encode_spec(&spec),
            spec: spec.clone(),
            created_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            state: WsState::Running,
            commands: Default::default(),
            finished_runs: Default::default(),
            cgroup,
            unenforced: warnings.clone(),
            stats: std::collections::VecDeque::new(),
        };
        let mut ids = Vec::new();
        for cmd in &spec.commands {
            let id = self.next_command;
            self.next_command += 1;
            self.commands
                .insert(id, Command::new(id, &name, cmd.clone()));
            ws.commands.insert(id);
            ids.push(id);
        }
        if let Some(ttl) = spec.ttl_ms {
            self.timers.add(
                Instant::now() + Duration::from_millis(ttl),
                TimerAction::WorkspaceTtl(name.clone()),
            );
        }
        let first_cgroup =
            ws.cgroup.is_some() && !self.workspaces.values().any(|w| w.cgroup.is_some());
        self.workspaces.insert(name.clone(), ws);
        if first_cgroup {
            self.timers
                .add(Instant::now() + STATS_EVERY, TimerAction::Stats);
        }
        self.watch_workspace(&name);
        self.event(EventKind::WorkspaceCreated {
            workspace: name.clone(),
        });
        for w in &warnings {
            self.event(EventKind::Warning {
                message: format!("workspace {name}: {w}"),
            });
        }
        let now = Instant::now();
        for id in ids {
            self.command_event(id, Event::Start, now);
        }
        Ok(warnings)
    }

    /// Add a one-shot to a running workspace and start it.
    pub(crate) fn run_in_workspace(
        &mut self,
        ws: &str,
        mut spec: shuma_card::CommandSpec,
    ) -> Result<u64, ReqError> {
        let Some(w) = self.workspaces.get(ws) else {
            return Err((ErrorCode::NotFound, format!("no workspace {ws}")));
        };
        if w.state != WsState::Running {
            return Err((ErrorCode::Invalid, format!("workspace {ws} is stopping")));
        }
        if self.commands.len() >= MAX_COMMANDS {
            return Err((ErrorCode::Limit, format!("at most {MAX_COMMANDS} commands")));
        }
        let id = self.next_command;
        self.next_command += 1;
        spec.kind = CommandKind::Task;
        spec.restart = shuma_card::RestartPolicy::Never;
        if spec.name.is_empty() {
            spec.name = format!("run-{id}");
        }
        if spec.argv.is_empty() || !spec.argv[0].starts_with('/') {
            return Err((
                ErrorCode::Invalid,
                "argv[0] must be an absolute path (arje does not search PATH)".into(),
            ));
        }
        let mut cmd = Command::new(id, ws, spec);
        cmd.adhoc = true;
        self.commands.insert(id, cmd);
        if let Some(w) = self.workspaces.get_mut(ws) {
            w.commands.insert(id);
        }
        Ok(id)
    }

    /// Forget the oldest finished `shuma run` one-shots of a workspace beyond
    /// [`KEEP_FINISHED_RUNS`]: their status and output stay readable for a while, but a
    /// workspace that runs millions of them does not grow without bound.
    pub(crate) fn prune_runs(&mut self, ws: &str, finished: u64) {
        let Some(w) = self.workspaces.get_mut(ws) else {
            return;
        };
        w.finished_runs.push_back(finished);
        while w.finished_runs.len() > KEEP_FINISHED_RUNS {
            let Some(old) = w.finished_runs.pop_front() else {
                break;
            };
            w.commands.remove(&old);
            if let (Some(cmd), Some(cg)) = (self.commands.remove(&old), &w.cgroup) {
                let _ = cg.remove_leaf(&super::commands::leaf_name(old, &cmd.spec.name));
            }
        }
    }

    /// Begin stopping a workspace: the stop signal to every live command, kill after
    /// grace. `grace` overrides (caps, at shutdown) each command's stop grace.
    pub(crate) fn stop_workspace(
        &mut self,
        name: &str,
        grace: Option<Duration>,
        cap_only: bool,
    ) -> bool {
        let Some(ws) = self.workspaces.get_mut(name) else {
            return false;
        };
        ws.state = WsState::Stopping;
        let ids: Vec<u64> = ws.commands.iter().copied().collect();
        let now = Instant::now();
        for id in ids {
            let g = match (grace, cap_only, self.commands.get(&id)) {
                (Some(g), true, Some(c)) => {
                    Some(Duration::from_millis(c.spec.stop_grace_ms).min(g))
                }
                (g, _, _) => g,
            };
            self.command_event(id, Event::Stop { grace: g }, now);
        }
        self.workspace_progress(name);
        true
    }

    /// A command of `name` reached a final state: if the workspace is stopping and
    /// nothing of it runs any more, finish its removal.
    pub(crate) fn workspace_progress(&mut self, name: &str) {
        let Some(ws) = self.workspaces.get(name) else {
            return;
        };
        if ws.state != WsState::Stopping {
            return;
        }
        if ws.commands.iter().any(|id| self.command_busy(*id)) {
            return;
        }
        // Descendants that left their process group are still in the cgroup:
        // cgroup.kill them all, then wait for `populated 0` (watched) before rmdir.
        if let Some(cg) = &ws.cgroup {
            match cg.populated() {
                Ok(true) => {
                    if let Err(e) = cg.kill() {
                        log::warn!("{e}");
                    }
                    return; // cgroup.events will tell us when it is empty.
                }
                Ok(false) => {}
                Err(e) => log::warn!("{e}"),
            }
        }
        self.remove_workspace(name);
    }

    fn remove_workspace(&mut self, name: &str) {
        let Some(ws) = self.workspaces.remove(name) else {
            return;
        };
        self.drop_watches(name);
        if let Some(cg) = &ws.cgroup {
            if let Err(e) = cg.remove() {
                log::warn!("{e}");
            }
        }
        for id in &ws.commands {
            self.commands.remove(id);
        }
        self.event(EventKind::WorkspaceStopped {
            workspace: name.to_string(),
        });
        for conn in self.followers(|f| matches!(f, Follow::WsStopped(n) if n == name)) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.follow = Follow::None;
            }
            self.reply(conn, shuma_card::protocol::Response::Ok);
        }
    }

    /// The shutdown deadline passed: SIGKILL what is left and drop the workspace. Its
    /// processes are reaped as orphans later; the kernel's reboot ends them anyway.
    pub(crate) fn force_remove_workspace(&mut self, name: &str) {
        let Some(ws) = self.workspaces.get(name) else {
            return;
        };
        let ids: Vec<u64> = ws.commands.iter().copied().collect();
        if let Some(cg) = &ws.cgroup {
            let _ = cg.kill();
        }
        for id in ids {
            if let Some(run) = self.commands.get(&id).and_then(|c| c.run.as_ref()) {
                log::warn!(
                    "shutdown: {name}/{} (pid {}) did not stop in time",
                    self.commands[&id].spec.name,
                    run.pid
                );
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(-run.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(run.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let pid = run.pid;
                self.pids.remove(&pid);
            }
        }
        self.remove_workspace(name);
    }

    /// A command was OOM-killed: the card says whether the workspace goes on (the
    /// restart policy applies) or is stopped.
    pub(crate) fn on_oom(&mut self, ws: &str, command: &str) {
        let stop = self
            .workspaces
            .get(ws)
            .is_some_and(|w| w.spec.on_oom == shuma_card::spec::OomAction::StopWorkspace);
        if stop {
            log::warn!("workspace {ws}: {command} was OOM-killed and the card says stop-workspace");
            self.stop_workspace(ws, None, false);
        }
    }
}

impl Runtime {
    /// Sample every workspace's cgroup; re-arms itself while any workspace has one.
    pub(crate) fn sample_stats(&mut self) {
        let mut any = false;
        for ws in self.workspaces.values_mut() {
            let Some(cg) = &ws.cgroup else { continue };
            any = true;
            let Ok(mut sample) = cg.stats() else { continue };
            if let Some(prev) = ws.stats.back() {
                sample.cpu_percent_x100 = crate::cgroup::cpu_percent_x100(prev, &sample);
            }
            if ws.stats.len() == STATS_HISTORY {
                ws.stats.pop_front();
            }
            ws.stats.push_back(sample);
        }
        if any {
            self.timers
                .add(Instant::now() + STATS_EVERY, TimerAction::Stats);
        }
    }
}
