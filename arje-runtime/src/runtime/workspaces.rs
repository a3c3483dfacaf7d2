//! Workspaces: creating one with its cgroup and commands, stopping it, removing it, and
//! what its cgroup's event files report.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use shuma_card::protocol::{ErrorCode, WorkspaceInfo, WsState};
use shuma_card::{CommandKind, EventKind, WorkspaceSpec};

use super::commands::Command;
use super::watches::{News, Report};
use super::{Lifecycle, Runtime, MAX_COMMANDS, MAX_WORKSPACES};
use crate::cgroup::EventsFile;
use crate::control::Follow;
use crate::ids::{CommandId, WorkspaceId};
use crate::supervise::Event;
use crate::timers::TimerAction;

pub struct Workspace {
    pub id: WorkspaceId,
    pub spec: WorkspaceSpec,
    /// `spec` encoded for the snapshot, cached until the spec changes.
    pub spec_bytes: Vec<u8>,
    pub created_unix_ms: u64,
    pub state: WsState,
    /// Command ids; ids grow, so this is creation order.
    pub commands: std::collections::BTreeSet<CommandId>,
    /// The card's commands by name: how a dependency is found (`deps.rs`). A `shuma run`
    /// one-shot is never in it.
    pub by_name: std::collections::HashMap<String, CommandId>,
    /// Finished `shuma run` one-shots, oldest first, for pruning.
    pub finished_runs: std::collections::VecDeque<CommandId>,
    pub cgroup: Option<crate::cgroup::WorkspaceCgroup>,
    /// Limits the card asks for that this host does not enforce.
    pub unenforced: Vec<String>,
    /// Recent cgroup statistics, oldest first, at most [`STATS_HISTORY`].
    pub stats: std::collections::VecDeque<shuma_card::protocol::StatsSample>,
    /// Its live pipelines, in `spec.pipelines` order (`pipelines.rs`).
    pub pipelines: Vec<crate::ids::PipelineId>,
}

/// Largest encoded workspace spec: the frame cap less room for the rest of a `ws show`
/// answer (the workspace's info and the unenforced-limit notes).
pub const MAX_SPEC: usize = shuma_card::protocol::MAX_FRAME - 64 * 1024;

/// Finished `shuma run` one-shots kept per workspace.
pub const KEEP_FINISHED_RUNS: usize = 64;
/// Samples of statistics kept per workspace.
pub const STATS_HISTORY: usize = 60;
/// How often statistics are sampled while someone watches them.
pub const STATS_EVERY: Duration = Duration::from_secs(2);
/// How long after the last `ws stats` (or `top` frame) the sampling goes on. An idle
/// arje with 1,000 workspaces would otherwise read 4,000 cgroup files every 2 s that no
/// one looks at: a wake-up nothing asked for.
pub const STATS_WATCH: Duration = Duration::from_secs(600);

impl Workspace {
    pub fn new(
        id: WorkspaceId,
        spec: WorkspaceSpec,
        created_unix_ms: u64,
        cgroup: Option<crate::cgroup::WorkspaceCgroup>,
        unenforced: Vec<String>,
    ) -> Workspace {
        Workspace {
            id,
            spec_bytes: shuma_card::snapshot::encode_spec(&spec),
            spec,
            created_unix_ms,
            state: WsState::Running,
            commands: Default::default(),
            by_name: Default::default(),
            finished_runs: Default::default(),
            cgroup,
            unenforced,
            stats: Default::default(),
            pipelines: Vec::new(),
        }
    }

    pub fn info(&self, commands: &std::collections::BTreeMap<CommandId, Command>) -> WorkspaceInfo {
        let running = self
            .commands
            .iter()
            .filter(|id| commands.get(id).is_some_and(|c| c.run.is_some()))
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

/// The wall clock in milliseconds since the Unix epoch (0 if the clock is before it): the
/// one reading of it for events, snapshots and start times.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

type ReqError = (ErrorCode, String);

/// What creating a workspace reports besides success.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Created {
    /// Limits the card asks for that this host does not enforce.
    pub warnings: Vec<String>,
    /// Commands that could not be started, as `name: why`.
    pub failed: Vec<String>,
}

/// A workspace put in the table by [`Runtime::add_workspace`] whose commands and
/// pipelines have not been started yet: [`Runtime::start_added`] starts them.
#[must_use = "nothing of the workspace runs until start_added"]
pub(crate) struct Added {
    pub(crate) created: Created,
    pub(crate) pipelines: Vec<crate::ids::PipelineId>,
}

impl Runtime {
    /// Create a workspace and start what may start now.
    pub(crate) fn create_workspace_inner(
        &mut self,
        spec: WorkspaceSpec,
    ) -> Result<Created, ReqError> {
        let added = self.add_workspace(spec)?;
        Ok(self.start_added(added))
    }

    /// Start what `added` holds, in dependency order: commands waiting for another
    /// start when it is ready. Returns what it had, with `failed` filled in.
    pub(crate) fn start_added(&mut self, added: Added) -> Created {
        let Added {
            mut created,
            pipelines,
        } = added;
        created.failed = self
            .start_pending(pipelines)
            .into_iter()
            .map(|(id, why)| format!("{}: {why}", self.command_label(id, false)))
            .collect();
        created
    }

    /// Start every pending command that may start, then `pipelines`. Returns what
    /// could not be spawned, with why. A command that cannot start does not undo its
    /// workspace (the others run, a service retries by its policy), but the creator
    /// hears of it.
    pub(crate) fn start_pending(
        &mut self,
        pipelines: impl IntoIterator<Item = crate::ids::PipelineId>,
    ) -> Vec<(CommandId, String)> {
        let mut failed = self.deps_progress(Instant::now());
        for p in pipelines {
            self.pipeline_start(p, Instant::now());
            failed.extend(self.pipeline_spawn_failures(p));
        }
        failed
    }

    /// A command's name, `WORKSPACE/NAME` with `qualified`.
    pub(crate) fn command_label(&self, id: CommandId, qualified: bool) -> String {
        match self.table.commands.get(&id) {
            Some(c) if qualified => format!("{}/{}", c.workspace, c.spec.name),
            Some(c) => c.spec.name.clone(),
            None => format!("command {id}"),
        }
    }

    /// Check `spec`, make its cgroup (limits written before anything runs in it) and
    /// put the workspace in the table with its commands pending; nothing is started.
    pub(crate) fn add_workspace(&mut self, spec: WorkspaceSpec) -> Result<Added, ReqError> {
        shuma_card::card::validate(&spec).map_err(|e| (ErrorCode::Invalid, e))?;
        // `ws show` answers with the spec in one frame beside a little more: a spec that
        // large could not be shown (nor sent by a client, whose request frame is capped
        // at the same size).
        let size = shuma_card::snapshot::encode_spec(&spec).len();
        if size > MAX_SPEC {
            return Err((
                ErrorCode::Invalid,
                format!("workspace {}: the card encodes to {size} bytes, more than the {MAX_SPEC}-byte limit", spec.name),
            ));
        }
        if self.life != Lifecycle::Running {
            return Err((
                ErrorCode::Invalid,
                "shutting down: no new workspaces".into(),
            ));
        }
        if self.table.id_of(&spec.name).is_some() {
            return Err((
                ErrorCode::AlreadyExists,
                format!("workspace {} already exists", spec.name),
            ));
        }
        if self.table.workspaces.len() >= MAX_WORKSPACES {
            return Err((
                ErrorCode::Limit,
                format!("at most {MAX_WORKSPACES} workspaces"),
            ));
        }
        let nodes: usize = spec.pipelines.iter().map(|p| p.nodes.len()).sum();
        if self.table.commands.len() + spec.commands.len() + nodes > MAX_COMMANDS {
            return Err((ErrorCode::Limit, format!("at most {MAX_COMMANDS} commands")));
        }
        // Limits are written before anything runs in the workspace.
        let (cgroup, warnings) = if self.cgroups.tree.is_enabled() {
            let (cg, warnings) = self
                .cgroups
                .tree
                .create_workspace(&spec.name, &spec.limits)
                .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
            (Some(cg), warnings)
        } else {
            (None, self.cgroups.tree.unenforced(&spec.limits))
        };
        let id = self.table.workspace_ids.next();
        let name = spec.name.clone();
        let mut ws = Workspace::new(id, spec, unix_ms(), cgroup, warnings.clone());
        let mut ids = Vec::new();
        for cmd in &ws.spec.commands {
            let cid = self.table.command_ids.next();
            self.table
                .commands
                .insert(cid, Command::new(cid, id, &name, cmd.clone()));
            ws.commands.insert(cid);
            ws.by_name.insert(cmd.name.clone(), cid);
            ids.push(cid);
        }
        if let Some(ttl) = ws.spec.ttl_ms {
            self.timers.add(
                Instant::now() + Duration::from_millis(ttl),
                TimerAction::WorkspaceTtl(id),
            );
        }
        let pipelines = ws.spec.pipelines.clone();
        self.insert_workspace(ws);
        self.event(EventKind::WorkspaceCreated {
            workspace: name.clone(),
        });
        let pipelines: Vec<_> = pipelines
            .into_iter()
            .map(|p| self.create_pipeline(id, p))
            .collect();
        for w in &warnings {
            self.event(EventKind::Warning {
                message: format!("workspace {name}: {w}"),
            });
        }
        self.table.pending.extend(ids);
        Ok(Added {
            created: Created {
                warnings,
                failed: Vec::new(),
            },
            pipelines,
        })
    }

    /// Put a workspace in the table and watch its cgroup's event files. (Statistics are
    /// sampled only while someone asks for them: [`Runtime::watch_stats`].)
    pub(crate) fn insert_workspace(&mut self, ws: Workspace) {
        let id = ws.id;
        let files: Vec<(EventsFile, OwnedFd)> = ws.cgroup.as_ref().map_or(Vec::new(), |cg| {
            [EventsFile::Cgroup, EventsFile::Memory]
                .into_iter()
                .filter_map(|which| cg.open_events_file(which).ok().map(|fd| (which, fd)))
                .collect()
        });
        self.table.insert_workspace(ws);
        for (which, fd) in files {
            self.cgroups.add(&self.reactor, id, which, fd);
        }
    }

    /// Add a one-shot to a running workspace. The request's command passes the same
    /// rules as a card's (`validate_command`): names, environment, signal, durations.
    pub(crate) fn run_in_workspace(
        &mut self,
        ws: &str,
        mut spec: shuma_card::CommandSpec,
    ) -> Result<CommandId, ReqError> {
        let Some(w) = self.table.named(ws) else {
            return Err((ErrorCode::NotFound, format!("no workspace {ws}")));
        };
        if w.state != WsState::Running {
            return Err((ErrorCode::Invalid, format!("workspace {ws} is stopping")));
        }
        let ws_id = w.id;
        if self.table.commands.len() >= MAX_COMMANDS {
            return Err((ErrorCode::Limit, format!("at most {MAX_COMMANDS} commands")));
        }
        spec.kind = CommandKind::Task;
        spec.restart = shuma_card::RestartPolicy::Never;
        let id = self.table.command_ids.next();
        if spec.name.is_empty() {
            spec.name = format!("run-{id}");
        }
        shuma_card::card::validate_command(&spec).map_err(|e| (ErrorCode::Invalid, e))?;
        let mut cmd = Command::new(id, ws_id, ws, spec);
        cmd.adhoc = true;
        self.table.commands.insert(id, cmd);
        if let Some(w) = self.table.workspaces.get_mut(&ws_id) {
            w.commands.insert(id);
        }
        Ok(id)
    }

    /// A `shuma run` one-shot finished: forget the oldest finished ones of its workspace
    /// beyond [`KEEP_FINISHED_RUNS`]. Their status and output stay readable for a while,
    /// but a workspace that runs millions of them does not grow without bound.
    pub(crate) fn prune_if_adhoc(&mut self, ws: WorkspaceId, finished: CommandId) {
        if !self.table.commands.get(&finished).is_some_and(|c| c.adhoc) {
            return;
        }
        let Some(w) = self.table.workspaces.get_mut(&ws) else {
            return;
        };
        w.finished_runs.push_back(finished);
        while w.finished_runs.len() > KEEP_FINISHED_RUNS {
            let Some(old) = w.finished_runs.pop_front() else {
                break;
            };
            w.commands.remove(&old);
            if let (Some(cmd), Some(cg)) = (self.table.commands.remove(&old), &w.cgroup) {
                let _ = cg.remove_leaf(&super::commands::leaf_name(old, &cmd.spec.name));
            }
        }
    }

    /// Begin stopping a workspace: the stop signal to every live command, kill after
    /// grace. `grace` overrides (or with `cap_only`, caps) each command's stop grace.
    pub(crate) fn stop_workspace(
        &mut self,
        id: WorkspaceId,
        grace: Option<Duration>,
        cap_only: bool,
    ) -> bool {
        let Some(ws) = self.table.workspaces.get_mut(&id) else {
            return false;
        };
        ws.state = WsState::Stopping;
        let ids: Vec<CommandId> = ws.commands.iter().copied().collect();
        let pipelines = ws.pipelines.clone();
        let now = Instant::now();
        // A pipeline stops its own nodes, source first.
        for p in pipelines {
            self.pipeline_stop(p, grace, cap_only, now);
        }
        let ids: Vec<CommandId> = ids
            .into_iter()
            .filter(|c| {
                self.table
                    .commands
                    .get(c)
                    .is_some_and(|c| c.pipeline.is_none())
            })
            .collect();
        // What never started will not; the rest stop in the reverse of the start order
        // (`stop_progress`): a command once nothing that is after it runs.
        for cid in ids {
            // Nothing runs: stopping it now cannot cut anything from under another.
            let idle = self.table.commands.get(&cid).is_some_and(|c| {
                matches!(
                    c.sup.state,
                    crate::supervise::State::Idle | crate::supervise::State::Backoff { .. }
                )
            });
            if self.table.pending.remove(&cid) || idle {
                self.command_event(cid, Event::Stop { grace: None }, now);
                continue;
            }
            let g = match (grace, cap_only, self.table.commands.get(&cid)) {
                (Some(g), true, Some(c)) => {
                    Some(Duration::from_millis(c.spec.stop_grace_ms).min(g))
                }
                (g, _, _) => g,
            };
            if let Some(c) = self.table.commands.get_mut(&cid) {
                c.stop_queued = Some(g);
            }
        }
        self.stop_progress(id);
        self.workspace_progress(id);
        self.waiters_progress();
        true
    }

    /// A command of the workspace reached a final state (or its cgroup emptied): if it
    /// is stopping and nothing of it runs any more, finish its removal.
    pub(crate) fn workspace_progress(&mut self, id: WorkspaceId) {
        let Some(ws) = self.table.workspaces.get(&id) else {
            return;
        };
        if ws.state != WsState::Stopping {
            return;
        }
        self.stop_progress(id);
        let Some(ws) = self.table.workspaces.get(&id) else {
            return;
        };
        let commands = &self.table.commands;
        if ws
            .commands
            .iter()
            .any(|c| commands.get(c).is_some_and(Command::busy))
        {
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
        } else {
            self.warn_unattributed(id);
        }
        self.remove_workspace(id);
    }

    fn remove_workspace(&mut self, id: WorkspaceId) {
        let pipelines = self
            .table
            .workspaces
            .get(&id)
            .map(|w| w.pipelines.clone())
            .unwrap_or_default();
        self.remove_pipelines(&pipelines);
        for report in self.cgroups.remove_workspace(&self.reactor, id) {
            self.on_cgroup_news(News::Report(report));
        }
        let Some(ws) = self.table.remove_workspace(id) else {
            return;
        };
        if let Some(cg) = &ws.cgroup {
            if let Err(e) = cg.remove() {
                log::warn!("{e}");
            }
        }
        self.event(EventKind::WorkspaceStopped {
            workspace: ws.spec.name.clone(),
        });
        // The final Ok of `ws stop` acknowledges the removal: held until the /run
        // snapshot no longer has the workspace.
        for conn in self.server.followers(|f| *f == Follow::WsStopped(id)) {
            self.server.set_follow(conn, Follow::None);
            self.server
                .deliver_held(&self.reactor, conn, &[shuma_card::protocol::Response::Ok]);
        }
    }

    /// The shutdown deadline passed: SIGKILL what is left and drop the workspace. Its
    /// processes are reaped as orphans later; the kernel's reboot ends them anyway.
    pub(crate) fn force_remove_workspace(&mut self, id: WorkspaceId) {
        let Some(ws) = self.table.workspaces.get(&id) else {
            return;
        };
        if let Some(cg) = &ws.cgroup {
            let _ = cg.kill();
        }
        for cid in &ws.commands {
            let Some(cmd) = self.table.commands.get(cid) else {
                continue;
            };
            let Some(run) = &cmd.run else { continue };
            log::warn!(
                "shutdown: {}/{} (pid {}) did not stop in time",
                ws.spec.name,
                cmd.spec.name,
                run.pid
            );
            for pid in [-run.pid, run.pid] {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            self.procs.forget(run.pid);
        }
        let ids: Vec<CommandId> = ws.commands.iter().copied().collect();
        for cid in ids {
            self.signal_stragglers(cid, libc::SIGKILL);
        }
        self.remove_workspace(id);
    }

    /// A command was OOM-killed: the card says whether the workspace goes on (the
    /// restart policy applies) or is stopped.
    pub(crate) fn on_oom(&mut self, ws: WorkspaceId, command: &str) {
        let Some(w) = self.table.workspaces.get(&ws) else {
            return;
        };
        if w.spec.on_oom == shuma_card::spec::OomAction::StopWorkspace {
            log::warn!(
                "workspace {}: {command} was OOM-killed and the card says stop-workspace",
                w.spec.name
            );
            self.stop_workspace(ws, None, false);
        }
    }

    /// Someone asked for statistics: sample every [`STATS_EVERY`] for the next
    /// [`STATS_WATCH`] (one sampler for all workspaces).
    pub(crate) fn watch_stats(&mut self, now: Instant) {
        self.stats_until = Some(now + STATS_WATCH);
        self.timers.add_once(now + STATS_EVERY, TimerAction::Stats);
    }

    /// Sample every workspace's cgroup; the sampler re-arms itself while any workspace
    /// has one and someone watches.
    pub(crate) fn sample_stats(&mut self, now: Instant) {
        let mut any = false;
        for ws in self.table.workspaces.values_mut() {
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
        if any && self.stats_until.is_some_and(|t| now < t) {
            self.timers.add_once(now + STATS_EVERY, TimerAction::Stats);
        }
    }

    /// What a cgroup watch had to say.
    pub(crate) fn on_cgroup_news(&mut self, news: News) {
        match news {
            News::Nothing => {}
            News::Emptied(ws) => self.workspace_progress(ws),
            News::LeafEmptied(watch) => self.remove_swept_leaf(watch),
            News::Report(report) => self.journal_report(report),
        }
    }

    /// Put what a watched file counted into the journal.
    fn journal_report(&mut self, r: Report) {
        let Some(workspace) = self.table.workspace_name(r.workspace) else {
            return;
        };
        if r.which == EventsFile::Pids {
            self.event(EventKind::PidsMax {
                workspace,
                count: r.current.max,
            });
            return;
        }
        if r.delta.oom_kill > 0 {
            let command = self.oom_victims(r.workspace);
            self.event(EventKind::OomKill {
                workspace: workspace.clone(),
                command,
                count: r.current.oom_kill,
            });
        }
        for (delta, which, count) in [
            (r.delta.max, "memory.max", r.current.max),
            (r.delta.high, "memory.high", r.current.high),
        ] {
            if delta > 0 {
                self.event(EventKind::MemoryLimit {
                    workspace: workspace.clone(),
                    which: which.into(),
                    count,
                });
            }
        }
    }

    /// Which running commands of the workspace had a task OOM-killed since last asked:
    /// their leaves' memory.events say so. Names joined with commas.
    fn oom_victims(&mut self, ws: WorkspaceId) -> Option<String> {
        let ids: Vec<CommandId> = self
            .table
            .workspaces
            .get(&ws)?
            .commands
            .iter()
            .copied()
            .collect();
        let mut names = Vec::new();
        for id in ids {
            let Some(cmd) = self.table.commands.get_mut(&id) else {
                continue;
            };
            let Some(run) = cmd.run.as_mut() else {
                continue;
            };
            let Some(leaf) = run.leaf.as_ref() else {
                continue;
            };
            let kills = leaf.memory_events().map_or(0, |m| m.oom_kill);
            if kills > run.oom_kills_seen {
                run.oom_kills_seen = kills;
                names.push(cmd.spec.name.clone());
            }
        }
        (!names.is_empty()).then(|| names.join(","))
    }
}
