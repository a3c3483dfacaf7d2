//! Pipelines: a graph of commands whose outputs feed the next ones' inputs, supervised
//! as one unit (issue 13).
//!
//! A pipeline owns its nodes (commands of its workspace named `pipeline.node`, tasks
//! with no restart of their own) and its fan-out copiers. Each run of it:
//! - makes one pipe per node that has inputs and hands the pipe ends over at spawn: an
//!   output with one edge writes straight into its reader's pipe (the kernel's
//!   backpressure, no copy by arje), every source of a reader shares its pipe (fan-in),
//!   and an output with several edges goes through a copier (`fanout.rs`);
//! - ends when every node has ended. The first node in source-to-sink order that failed
//!   (an exit other than 0, a signal other than SIGPIPE, or no start) fails the run: the
//!   whole pipeline starts again after a backoff that doubles from `backoff_initial` up
//!   to `backoff_max`, until more than `restart_max` failed runs in a row; then it is
//!   failed, with the node and its stderr tail. A writer killed by SIGPIPE (or a shell
//!   exiting 141 = 128 + SIGPIPE for its own pipeline) only lost its reader, which ended
//!   first (`yes | head`), so it is not blamed.
//!
//! A stop goes source first: the sources get their stop signal; a node whose feeders
//! have all ended is given its stop grace to drain its input and exit by itself, and gets
//! its stop signal (then SIGKILL) only when that runs out.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use shuma_card::pipeline::{Edge, OutStream, PipelineSpec};
use shuma_card::protocol::{ErrorCode, PipeState, PipelineInfo, Response, WsState};
use shuma_card::{CommandKind, CommandSpec, EventKind, ExitStatus, RestartPolicy};

use super::commands::{Command, NodeStdio};
use super::requests::Reply;
use super::Runtime;
use crate::ids::{CommandId, FanoutId, PipelineId, WorkspaceId};
use crate::supervise::Event;
use crate::timers::TimerAction;

/// Where a pipeline is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PState {
    /// Created, not started yet.
    Idle,
    Running,
    /// Waiting out its backoff; restarts at `until`.
    Backoff {
        until: Instant,
    },
    /// Being stopped, source first; `grace` overrides (or with `cap`, caps) the nodes'.
    Stopping {
        grace: Option<Duration>,
        cap: bool,
    },
    /// Every node exited 0, or it was stopped.
    Done,
    /// Its failed runs in a row exceeded `restart_max`.
    Failed,
}

/// A node's progress through a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// Some node that feeds it still runs.
    Fed,
    /// Its feeders have ended: it may exit by itself until then.
    Until(Instant),
    /// Its stop signal was sent (or it had ended).
    Sent,
}

pub struct Pipeline {
    pub ws: WorkspaceId,
    pub workspace: String,
    pub spec: PipelineSpec,
    /// Node `i`'s command, in `spec.nodes` order.
    pub nodes: Vec<CommandId>,
    pub state: PState,
    /// Failed runs in a row: the backoff's exponent and what `restart_max` limits.
    pub restarts: u32,
    /// Why it failed, once failed.
    pub reason: Option<String>,
    /// Bytes fan-out edges dropped since it was created.
    pub dropped: u64,
    /// Its fan-out copiers for the current run.
    pub fanouts: Vec<FanoutId>,
    drain: Vec<Drain>,
    /// Once the stop in progress is over, start a new run instead of being done (a
    /// restored run whose copiers were lost).
    pub restart_after_stop: bool,
}

impl Pipeline {
    pub fn info(&self) -> PipelineInfo {
        PipelineInfo {
            workspace: Some(self.workspace.clone()),
            name: self.spec.name.clone(),
            state: match self.state {
                PState::Idle | PState::Backoff { .. } => PipeState::Backoff,
                PState::Running => PipeState::Running,
                PState::Stopping { .. } => PipeState::Stopping,
                PState::Done => PipeState::Done,
                PState::Failed => PipeState::Failed,
            },
            restarts: self.restarts,
            nodes: self.spec.nodes.iter().map(|n| n.name.clone()).collect(),
            edges: self.spec.edges.iter().map(Edge::to_string).collect(),
            reason: self.reason.clone(),
            dropped: self.dropped,
        }
    }

    /// What the snapshot keeps of it.
    pub fn saved_state(&self, now: Instant, now_unix: u64) -> shuma_card::snapshot::PipelineState {
        shuma_card::snapshot::PipelineState {
            name: self.spec.name.clone(),
            restarts: self.restarts,
            done: self.state == PState::Done,
            failed: match self.state {
                PState::Failed => Some(self.reason.clone().unwrap_or_default()),
                _ => None,
            },
            backoff_until_unix_ms: match self.state {
                PState::Backoff { until } => {
                    Some(now_unix + until.saturating_duration_since(now).as_millis() as u64)
                }
                _ => None,
            },
        }
    }
}

/// The command that runs `node` of `p`: a task called `p.node`, never restarted on its
/// own.
pub fn node_command(p: &PipelineSpec, node: &CommandSpec) -> CommandSpec {
    let mut c = node.clone();
    c.name = p.command_name(&node.name);
    c.kind = CommandKind::Task;
    c.restart = RestartPolicy::Never;
    c
}

/// The delay before the `n`th restart in a row (1-based): `initial` doubled `n - 1`
/// times, at most `max`.
pub fn backoff(p: &PipelineSpec, n: u32) -> Duration {
    let doubled = p
        .backoff_initial_ms
        .saturating_mul(1u64.checked_shl(n.saturating_sub(1)).unwrap_or(u64::MAX));
    Duration::from_millis(doubled.min(p.backoff_max_ms))
}

/// Did a node's run fail the pipeline? `None` if it succeeded.
fn node_failure(c: &Command) -> Option<String> {
    match c.sup.last_exit {
        Some(s) if s.success() => None,
        // Its reader ended first: the writer's end, not a failure. A shell reports its
        // own pipeline's last command killed so as exit 128 + 13.
        Some(ExitStatus::Signal(13) | ExitStatus::Code(141)) => None,
        Some(s) => Some(format!("{s}{}", super::ready::stderr_tail(c))),
        None => Some(match &c.sup.state {
            crate::supervise::State::Failed { reason } => reason.clone(),
            _ => "did not start".into(),
        }),
    }
}

/// What a pipeline does once every node has ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Done for good.
    Finished,
    /// Start again after `delay`; `failed` names the node that failed, if one did.
    Restart {
        delay: Duration,
        failed: Option<String>,
    },
    /// Mark it failed.
    Fail { node: String, reason: String },
}

/// The rule, pure: `restarts` failed runs in a row so far, `failure` the node that failed
/// this run and how. Returns the verdict and the new count.
pub fn verdict(
    p: &PipelineSpec,
    restarts: u32,
    failure: Option<(String, String)>,
) -> (Verdict, u32) {
    match failure {
        None if p.restart == RestartPolicy::Always => (
            Verdict::Restart {
                delay: backoff(p, 1),
                failed: None,
            },
            0,
        ),
        None => (Verdict::Finished, 0),
        Some((node, reason)) => {
            let n = restarts.saturating_add(1);
            if p.restart == RestartPolicy::Never || (p.restart_max != 0 && n > p.restart_max) {
                return (Verdict::Fail { node, reason }, restarts);
            }
            (
                Verdict::Restart {
                    delay: backoff(p, n),
                    failed: Some(node),
                },
                n,
            )
        }
    }
}

impl Runtime {
    /// Add `spec` to workspace `ws` as a live pipeline with its node commands, not
    /// started. The caller has validated it against the workspace.
    pub(crate) fn create_pipeline(&mut self, ws: WorkspaceId, spec: PipelineSpec) -> PipelineId {
        let workspace = self.table.workspace_name(ws).unwrap_or_default();
        let mut nodes = Vec::with_capacity(spec.nodes.len());
        for node in &spec.nodes {
            let cid = self.table.command_ids.next();
            let cmd = Command::new(cid, ws, &workspace, node_command(&spec, node));
            self.table.commands.insert(cid, cmd);
            if let Some(w) = self.table.workspaces.get_mut(&ws) {
                w.commands.insert(cid);
            }
            nodes.push(cid);
        }
        self.insert_pipeline(ws, workspace, spec, nodes)
    }

    /// Put a pipeline record over existing node commands (creation, or a restore).
    pub(crate) fn insert_pipeline(
        &mut self,
        ws: WorkspaceId,
        workspace: String,
        spec: PipelineSpec,
        nodes: Vec<CommandId>,
    ) -> PipelineId {
        let id = self.table.pipeline_ids.next();
        for cid in &nodes {
            if let Some(c) = self.table.commands.get_mut(cid) {
                c.pipeline = Some((id, spec.name.clone()));
            }
        }
        let n = nodes.len();
        self.table.pipelines.insert(
            id,
            Pipeline {
                ws,
                workspace,
                spec,
                nodes,
                state: PState::Idle,
                restarts: 0,
                reason: None,
                dropped: 0,
                fanouts: Vec::new(),
                drain: vec![Drain::Fed; n],
                restart_after_stop: false,
            },
        );
        if let Some(w) = self.table.workspaces.get_mut(&ws) {
            w.pipelines.push(id);
        }
        id
    }

    /// Start a run: make the pipes, hand them to the nodes and start every node.
    pub(crate) fn pipeline_start(&mut self, id: PipelineId, now: Instant) {
        let Some(p) = self.table.pipelines.get(&id) else {
            return;
        };
        let commands = &self.table.commands;
        if p.nodes
            .iter()
            .any(|c| commands.get(c).is_some_and(Command::busy))
        {
            return; // A node of the last run still runs; its end brings us back.
        }
        let (spec, nodes) = (p.spec.clone(), p.nodes.clone());
        let mut stdio = match self.wire(id, &spec) {
            Ok(s) => s,
            Err(e) => {
                let reason = format!("pipes: {e}");
                self.pipeline_fail(id, String::new(), reason);
                return;
            }
        };
        for (i, cid) in nodes.iter().enumerate() {
            if let Some(c) = self.table.commands.get_mut(cid) {
                c.stdio = Some(std::mem::take(&mut stdio[i]));
                c.sup.last_exit = None;
                c.reason = None;
            }
        }
        if let Some(p) = self.table.pipelines.get_mut(&id) {
            p.state = PState::Running;
            p.drain.iter_mut().for_each(|d| *d = Drain::Fed);
        }
        self.event(EventKind::PipelineStarted {
            workspace: self.pipeline_ws_name(id),
            pipeline: spec.name.clone(),
        });
        // Sinks first, so each reader runs before its writers fill its pipe.
        let order = spec.order().unwrap_or_else(|| (0..nodes.len()).collect());
        for i in order.into_iter().rev() {
            // A node that cannot start ends at once (a task gives up): its pipes close
            // with its NodeStdio, its neighbours see their end of file, and the run
            // fails when they are done.
            let _ = self.command_event(nodes[i], Event::Start, now);
        }
        self.store.mark_dirty();
    }

    /// The pipes of one run, as each node's stdio (by node index). Fan-out copiers are
    /// registered under the pipeline.
    fn wire(&mut self, id: PipelineId, spec: &PipelineSpec) -> std::io::Result<Vec<NodeStdio>> {
        let n = spec.nodes.len();
        let index = |name: &str| spec.node(name).unwrap_or(0);
        // One pipe per node with inputs: (read end for the node, write end to share).
        let mut inputs: Vec<Option<(OwnedFd, OwnedFd)>> = Vec::with_capacity(n);
        for i in 0..n {
            let fed = spec.edges.iter().any(|e| index(&e.to) == i);
            inputs.push(match fed {
                true => Some(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?),
                false => None,
            });
        }
        let writer = |to: usize| -> std::io::Result<OwnedFd> {
            let (_, w) = inputs[to].as_ref().expect("a fed node has a pipe");
            w.try_clone()
        };
        let mut stdio: Vec<NodeStdio> = (0..n).map(|_| NodeStdio::default()).collect();
        let mut fanouts = Vec::new();
        for (i, node) in spec.nodes.iter().enumerate() {
            for stream in [OutStream::Stdout, OutStream::Stderr] {
                let edges: Vec<&Edge> = spec
                    .edges
                    .iter()
                    .filter(|e| e.from == node.name && e.stream == stream)
                    .collect();
                let fd = match edges.as_slice() {
                    [] => continue,
                    [one] => writer(index(&one.to))?,
                    many => {
                        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
                        let mut dests = Vec::with_capacity(many.len());
                        for e in many {
                            dests.push((e.to_string(), writer(index(&e.to))?));
                        }
                        fanouts.push(self.fanouts.add(
                            &self.reactor,
                            id,
                            r,
                            dests,
                            spec.fanout_buffer,
                        )?);
                        w
                    }
                };
                match stream {
                    OutStream::Stdout => stdio[i].stdout = Some(fd),
                    OutStream::Stderr => stdio[i].stderr = Some(fd),
                }
            }
        }
        for (i, input) in inputs.into_iter().enumerate() {
            // arje's copy of the write end closes here: each reader sees its end of file
            // once its writers (and copiers) are done.
            stdio[i].stdin = input.map(|(r, _)| r);
        }
        if let Some(p) = self.table.pipelines.get_mut(&id) {
            p.fanouts = fanouts;
        }
        Ok(stdio)
    }

    fn pipeline_ws_name(&self, id: PipelineId) -> String {
        self.table
            .pipelines
            .get(&id)
            .map(|p| p.workspace.clone())
            .unwrap_or_default()
    }

    /// A node reached a final state: if it was the last of its run, decide what the
    /// pipeline does; if the pipeline is stopping, move the stop along.
    pub(crate) fn pipeline_node_ended(&mut self, node: CommandId, now: Instant) {
        let Some((id, _)) = self
            .table
            .commands
            .get(&node)
            .and_then(|c| c.pipeline.clone())
        else {
            return;
        };
        self.pipeline_progress(id, now);
    }

    /// Move a pipeline along: a stop's next nodes, or the verdict once all have ended.
    pub(crate) fn pipeline_progress(&mut self, id: PipelineId, now: Instant) {
        let Some(p) = self.table.pipelines.get(&id) else {
            return;
        };
        let commands = &self.table.commands;
        let busy = |cid: &CommandId| commands.get(cid).is_some_and(Command::busy);
        let all_ended = !p.nodes.iter().any(busy);
        match p.state {
            PState::Stopping { .. } if !all_ended => self.pipeline_drain(id, now),
            PState::Stopping { .. } if p.restart_after_stop => {
                if let Some(p) = self.table.pipelines.get_mut(&id) {
                    p.restart_after_stop = false;
                    p.state = PState::Idle;
                }
                self.close_fanouts(id);
                self.pipeline_start(id, now);
            }
            PState::Stopping { .. } => {
                self.pipeline_finish(id);
                let ws = self.table.pipelines.get(&id).map(|p| p.ws);
                if let Some(ws) = ws {
                    self.workspace_progress(ws);
                }
            }
            PState::Running if all_ended => self.pipeline_verdict(id, now),
            _ => {}
        }
    }

    /// Every node of a run has ended: finish, restart or fail it.
    fn pipeline_verdict(&mut self, id: PipelineId, now: Instant) {
        let Some(p) = self.table.pipelines.get(&id) else {
            return;
        };
        let order = p
            .spec
            .order()
            .unwrap_or_else(|| (0..p.nodes.len()).collect());
        let failure = order.iter().find_map(|&i| {
            let c = self.table.commands.get(&p.nodes[i])?;
            node_failure(c).map(|why| (p.spec.nodes[i].name.clone(), why))
        });
        let (verdict, restarts) = verdict(&p.spec, p.restarts, failure);
        let (workspace, pipeline) = (p.workspace.clone(), p.spec.name.clone());
        self.close_fanouts(id);
        match verdict {
            Verdict::Finished => self.pipeline_finish(id),
            Verdict::Fail { node, reason } => self.pipeline_fail(id, node, reason),
            Verdict::Restart { delay, failed } => {
                if let Some(p) = self.table.pipelines.get_mut(&id) {
                    p.restarts = restarts;
                    p.state = PState::Backoff { until: now + delay };
                }
                self.timers.add(now + delay, TimerAction::Pipeline(id));
                match failed {
                    Some(node) => self.event(EventKind::PipelineRestarting {
                        workspace,
                        pipeline,
                        node,
                        delay_ms: delay.as_millis() as u64,
                        restarts,
                    }),
                    None => self.event(EventKind::PipelineFinished {
                        workspace,
                        pipeline,
                    }),
                }
            }
        }
        self.store.mark_dirty();
    }

    fn pipeline_finish(&mut self, id: PipelineId) {
        self.close_fanouts(id);
        let Some(p) = self.table.pipelines.get_mut(&id) else {
            return;
        };
        p.state = PState::Done;
        let (workspace, pipeline) = (p.workspace.clone(), p.spec.name.clone());
        self.event(EventKind::PipelineFinished {
            workspace,
            pipeline,
        });
        self.store.mark_dirty();
    }

    fn pipeline_fail(&mut self, id: PipelineId, node: String, reason: String) {
        self.close_fanouts(id);
        let Some(p) = self.table.pipelines.get_mut(&id) else {
            return;
        };
        p.state = PState::Failed;
        p.reason = Some(match node.is_empty() {
            true => reason.clone(),
            false => format!("{node}: {reason}"),
        });
        let (workspace, pipeline) = (p.workspace.clone(), p.spec.name.clone());
        self.event(EventKind::PipelineFailed {
            workspace,
            pipeline,
            node,
            reason,
        });
        self.store.mark_dirty();
    }

    /// A pipeline's timer: its backoff is over, or a draining node's grace may be.
    pub(crate) fn on_pipeline_timer(&mut self, id: PipelineId, now: Instant) {
        let Some(p) = self.table.pipelines.get(&id) else {
            return;
        };
        match p.state {
            PState::Backoff { until } if now >= until => self.pipeline_start(id, now),
            PState::Stopping { .. } => self.pipeline_drain(id, now),
            _ => {}
        }
    }

    /// Stop a pipeline, source first. Nothing running: it is done at once.
    pub(crate) fn pipeline_stop(
        &mut self,
        id: PipelineId,
        grace: Option<Duration>,
        cap: bool,
        now: Instant,
    ) {
        let Some(p) = self.table.pipelines.get_mut(&id) else {
            return;
        };
        match p.state {
            PState::Running => {
                p.state = PState::Stopping { grace, cap };
                self.pipeline_progress(id, now);
            }
            PState::Idle | PState::Backoff { .. } => self.pipeline_finish(id),
            PState::Stopping { .. } | PState::Done | PState::Failed => {}
        }
    }

    /// A stop's next steps: sources get their stop signal; a node whose feeders have all
    /// ended drains until its grace is over, then gets it.
    fn pipeline_drain(&mut self, id: PipelineId, now: Instant) {
        let Some(p) = self.table.pipelines.get(&id) else {
            return;
        };
        let PState::Stopping { grace, cap } = p.state else {
            return;
        };
        let commands = &self.table.commands;
        let busy = |i: usize| commands.get(&p.nodes[i]).is_some_and(Command::busy);
        let mut drain = p.drain.clone();
        let mut stop = Vec::new();
        let mut wake = None;
        for (i, slot) in drain.iter_mut().enumerate() {
            if *slot == Drain::Sent {
                continue;
            }
            if !busy(i) {
                *slot = Drain::Sent;
                continue;
            }
            let name = &p.spec.nodes[i].name;
            let mut feeders = p.spec.edges.iter().filter(|e| &e.to == name);
            let fed = feeders.any(|e| p.spec.node(&e.from).is_some_and(busy));
            let is_source = !p.spec.edges.iter().any(|e| &e.to == name);
            let own = Duration::from_millis(p.spec.nodes[i].stop_grace_ms);
            let g = match (grace, cap) {
                (Some(g), true) => own.min(g),
                (Some(g), false) => g,
                (None, _) => own,
            };
            match *slot {
                _ if is_source => {
                    *slot = Drain::Sent;
                    stop.push((p.nodes[i], g));
                }
                Drain::Fed if !fed => {
                    *slot = Drain::Until(now + g);
                    wake = Some(wake.map_or(now + g, |w: Instant| w.min(now + g)));
                }
                Drain::Until(t) if now >= t => {
                    *slot = Drain::Sent;
                    stop.push((p.nodes[i], g));
                }
                _ => {}
            }
        }
        if let Some(p) = self.table.pipelines.get_mut(&id) {
            p.drain = drain;
        }
        if let Some(at) = wake {
            self.timers.add(at, TimerAction::Pipeline(id));
        }
        for (cid, g) in stop {
            self.command_event(cid, Event::Stop { grace: Some(g) }, now);
        }
    }

    /// Close a pipeline's copiers (its run is over), reporting their last drops.
    fn close_fanouts(&mut self, id: PipelineId) {
        let Some(p) = self.table.pipelines.get_mut(&id) else {
            return;
        };
        let ids = std::mem::take(&mut p.fanouts);
        let mut drops = Vec::new();
        for f in ids {
            drops.extend(self.fanouts.remove(&self.reactor, f));
        }
        self.report_drops(drops);
    }

    /// Journal what fan-out edges dropped.
    pub(crate) fn report_drops(&mut self, drops: Vec<(PipelineId, String, u64)>) {
        for (id, edge, bytes) in drops {
            let Some(p) = self.table.pipelines.get(&id) else {
                continue;
            };
            let (workspace, pipeline) = (p.workspace.clone(), p.spec.name.clone());
            self.event(EventKind::PipelineDropped {
                workspace,
                pipeline,
                edge,
                bytes,
            });
        }
    }

    /// A copier's event: count and report its drops.
    pub(crate) fn on_fanout(&mut self, moved: super::fanout::Moved) {
        for (id, bytes) in moved.dropped_now {
            if let Some(p) = self.table.pipelines.get_mut(&id) {
                p.dropped += bytes;
            }
        }
        self.report_drops(moved.dropped);
    }

    /// Forget a workspace's pipelines (it is being removed).
    pub(crate) fn remove_pipelines(&mut self, ids: &[PipelineId]) {
        for id in ids {
            self.close_fanouts(*id);
            self.table.pipelines.remove(id);
        }
    }

    /// The nodes of a pipeline that could not start in its latest run, as `name: why`
    /// (for the creator of a workspace, as its commands' are).
    pub(crate) fn pipeline_spawn_failures(&self, id: PipelineId) -> Vec<(CommandId, String)> {
        let Some(p) = self.table.pipelines.get(&id) else {
            return Vec::new();
        };
        p.nodes
            .iter()
            .filter_map(|cid| self.table.commands.get(cid))
            .filter(|c| c.sup.last_exit.is_none())
            .filter_map(|c| match &c.sup.state {
                crate::supervise::State::Failed { reason } => Some((c.id, reason.clone())),
                _ => None,
            })
            .collect()
    }

    /// The live pipelines of one workspace or of all, in creation order.
    pub(crate) fn pipeline_infos(&self, ws: Option<WorkspaceId>) -> Vec<PipelineInfo> {
        self.table
            .pipelines
            .values()
            .filter(|p| ws.is_none() || ws == Some(p.ws))
            .map(Pipeline::info)
            .collect()
    }

    /// The pipeline of workspace `ws` called `name`.
    pub(crate) fn pipeline_named(&self, ws: WorkspaceId, name: &str) -> Option<PipelineId> {
        let w = self.table.workspaces.get(&ws)?;
        w.pipelines.iter().copied().find(|id| {
            self.table
                .pipelines
                .get(id)
                .is_some_and(|p| p.spec.name == name)
        })
    }
}

/// Most pipelines saved by name.
pub const MAX_SAVED_PIPELINES: usize = 256;

type ReqError = (ErrorCode, String);

impl Runtime {
    /// `shuma pipeline save`: keep `spec` by its name (replacing one of that name).
    pub(crate) fn pipeline_save(&mut self, spec: PipelineSpec) -> Result<Reply, ReqError> {
        shuma_card::card::validate_pipeline(&spec).map_err(|e| (ErrorCode::Invalid, e))?;
        let size = shuma_card::snapshot::encode_spec(&shuma_card::WorkspaceSpec {
            pipelines: vec![spec.clone()],
            ..Default::default()
        })
        .len();
        if size > super::workspaces::MAX_SPEC {
            return Err((
                ErrorCode::Invalid,
                format!(
                    "pipeline {}: {size} bytes encoded, more than {}",
                    spec.name,
                    super::workspaces::MAX_SPEC
                ),
            ));
        }
        let saved = &mut self.table.saved_pipelines;
        if !saved.contains_key(&spec.name) && saved.len() >= MAX_SAVED_PIPELINES {
            return Err((
                ErrorCode::Limit,
                format!("at most {MAX_SAVED_PIPELINES} saved pipelines"),
            ));
        }
        saved.insert(spec.name.clone(), spec);
        self.store.mark_dirty();
        Ok(Reply::Saved(vec![Response::Ok]))
    }

    /// `shuma pipeline run WORKSPACE NAME`: the saved pipeline joins the workspace's
    /// (its card as the snapshot keeps it, too) and starts. One of the same name that has
    /// ended is replaced; one that runs is not.
    pub(crate) fn pipeline_run(&mut self, workspace: &str, name: &str) -> Result<(), ReqError> {
        let spec = self
            .table
            .saved_pipelines
            .get(name)
            .cloned()
            .ok_or_else(|| (ErrorCode::NotFound, format!("no saved pipeline {name}")))?;
        let ws = self
            .table
            .id_of(workspace)
            .ok_or_else(|| (ErrorCode::NotFound, format!("no workspace {workspace}")))?;
        let w = &self.table.workspaces[&ws];
        if w.state != WsState::Running || self.life != super::Lifecycle::Running {
            return Err((
                ErrorCode::Invalid,
                format!("workspace {workspace} is stopping"),
            ));
        }
        let old = self.pipeline_named(ws, name);
        if let Some(old) = old.and_then(|id| self.table.pipelines.get(&id)) {
            if !matches!(old.state, PState::Done | PState::Failed) {
                return Err((
                    ErrorCode::AlreadyExists,
                    format!("pipeline {name} runs in workspace {workspace}: stop it first"),
                ));
            }
        }
        let mut card = w.spec.clone();
        card.pipelines.retain(|p| p.name != name);
        card.pipelines.push(spec.clone());
        shuma_card::card::validate(&card).map_err(|e| (ErrorCode::Invalid, e))?;
        let bytes = shuma_card::snapshot::encode_spec(&card);
        if bytes.len() > super::workspaces::MAX_SPEC {
            return Err((
                ErrorCode::Invalid,
                format!(
                    "workspace {workspace}: its card would encode to {} bytes, more than {}",
                    bytes.len(),
                    super::workspaces::MAX_SPEC
                ),
            ));
        }
        let old_nodes = old
            .and_then(|id| self.table.pipelines.get(&id))
            .map_or(0, |p| p.nodes.len());
        if self.table.commands.len() - old_nodes + spec.nodes.len() > super::MAX_COMMANDS {
            return Err((
                ErrorCode::Limit,
                format!("at most {} commands", super::MAX_COMMANDS),
            ));
        }
        if let Some(old) = old {
            self.drop_pipeline(old);
        }
        if let Some(w) = self.table.workspaces.get_mut(&ws) {
            w.spec = card;
            w.spec_bytes = bytes;
        }
        let id = self.create_pipeline(ws, spec);
        self.pipeline_start(id, Instant::now());
        Ok(())
    }

    /// Forget an ended pipeline and its node commands (their leaves too).
    fn drop_pipeline(&mut self, id: PipelineId) {
        self.close_fanouts(id);
        let Some(p) = self.table.pipelines.remove(&id) else {
            return;
        };
        let Some(w) = self.table.workspaces.get_mut(&p.ws) else {
            return;
        };
        w.pipelines.retain(|x| *x != id);
        for cid in p.nodes {
            w.commands.remove(&cid);
            if let (Some(cmd), Some(cg)) = (self.table.commands.remove(&cid), &w.cgroup) {
                let _ = cg.remove_leaf(&super::commands::leaf_name(cid, &cmd.spec.name));
            }
        }
    }
}

/// The command of the pipeline node called `name` (`pipeline.node`) in `spec`, if one is.
pub(crate) fn find_node(spec: &shuma_card::WorkspaceSpec, name: &str) -> Option<CommandSpec> {
    spec.pipelines.iter().find_map(|p| {
        p.nodes
            .iter()
            .find(|n| p.command_name(&n.name) == name)
            .map(|n| node_command(p, n))
    })
}

impl Runtime {
    /// A restored workspace's pipelines over its restored node commands, each where its
    /// record says: failed or done stays so; one whose nodes were adopted runs on (but
    /// one with fan-out is stopped and run again, since its copiers did not survive the
    /// exec); one in backoff waits out the rest. Returns those to start now.
    pub(crate) fn restore_pipelines(
        &mut self,
        ws: WorkspaceId,
        saved: Vec<shuma_card::snapshot::PipelineState>,
        now: Instant,
        now_unix: u64,
    ) -> Vec<PipelineId> {
        let Some(w) = self.table.workspaces.get(&ws) else {
            return Vec::new();
        };
        let (specs, workspace) = (w.spec.pipelines.clone(), w.spec.name.clone());
        let mut start = Vec::new();
        for spec in specs {
            let mut nodes = Vec::with_capacity(spec.nodes.len());
            for n in &spec.nodes {
                let full = spec.command_name(&n.name);
                let w = &self.table.workspaces[&ws];
                let found = w.commands.iter().copied().find(|c| {
                    self.table
                        .commands
                        .get(c)
                        .is_some_and(|c| c.spec.name == full)
                });
                let cid = found.unwrap_or_else(|| {
                    let cid = self.table.command_ids.next();
                    let cmd = Command::new(cid, ws, &workspace, node_command(&spec, n));
                    self.table.commands.insert(cid, cmd);
                    if let Some(w) = self.table.workspaces.get_mut(&ws) {
                        w.commands.insert(cid);
                    }
                    cid
                });
                nodes.push(cid);
            }
            let record = saved.iter().find(|s| s.name == spec.name).cloned();
            let fanout = has_fanout(&spec);
            let id = self.insert_pipeline(ws, workspace.clone(), spec, nodes);
            let commands = &self.table.commands;
            let Some(p) = self.table.pipelines.get_mut(&id) else {
                continue;
            };
            let live = p
                .nodes
                .iter()
                .any(|c| commands.get(c).is_some_and(Command::busy));
            let record = record.unwrap_or_default();
            p.restarts = record.restarts;
            let until = record
                .backoff_until_unix_ms
                .map(|t| now + Duration::from_millis(t.saturating_sub(now_unix)));
            match (record.failed, record.done, live, until) {
                (Some(reason), ..) => {
                    p.state = PState::Failed;
                    p.reason = Some(reason);
                }
                (None, true, ..) => p.state = PState::Done,
                (None, false, true, _) if fanout => {
                    p.state = PState::Running;
                    p.restart_after_stop = true;
                    self.pipeline_stop(id, None, false, now);
                }
                (None, false, true, _) => p.state = PState::Running,
                (None, false, false, Some(until)) if until > now => {
                    p.state = PState::Backoff { until };
                    self.timers.add(until, TimerAction::Pipeline(id));
                }
                (None, false, false, _) => start.push(id),
            }
        }
        start
    }
}

/// Does some output of `p` feed several readers (through a copier)?
fn has_fanout(p: &PipelineSpec) -> bool {
    p.edges.iter().enumerate().any(|(i, e)| {
        p.edges[..i]
            .iter()
            .any(|f| f.from == e.from && f.stream == e.stream)
    })
}

/// Saved pipelines by name, as `shuma pipeline ls` lists them.
pub(crate) fn saved_infos(saved: &BTreeMap<String, PipelineSpec>) -> Vec<PipelineInfo> {
    saved
        .values()
        .map(|p| PipelineInfo {
            workspace: None,
            name: p.name.clone(),
            state: PipeState::Saved,
            restarts: 0,
            nodes: p.nodes.iter().map(|n| n.name.clone()).collect(),
            edges: p.edges.iter().map(Edge::to_string).collect(),
            reason: None,
            dropped: 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(restart: RestartPolicy, restart_max: u32) -> PipelineSpec {
        let mut p = PipelineSpec::new("p");
        p.restart = restart;
        p.restart_max = restart_max;
        p.backoff_initial_ms = 100;
        p.backoff_max_ms = 1_000;
        p
    }

    fn failed(node: &str) -> Option<(String, String)> {
        Some((node.into(), "exit 1".into()))
    }

    #[test]
    fn test_backoff_doubles_and_caps() {
        let p = spec(RestartPolicy::OnFailure, 0);
        let ms: Vec<u128> = (1..=6).map(|n| backoff(&p, n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(backoff(&p, 200).as_millis(), 1_000);
    }

    #[test]
    fn test_verdict_failures_restart_with_growing_delay_until_restart_max() {
        let p = spec(RestartPolicy::OnFailure, 3);
        let mut restarts = 0;
        let mut delays = Vec::new();
        loop {
            let (v, n) = verdict(&p, restarts, failed("mid"));
            restarts = n;
            match v {
                Verdict::Restart { delay, failed } => {
                    assert_eq!(failed.as_deref(), Some("mid"));
                    delays.push(delay.as_millis());
                }
                Verdict::Fail { node, .. } => {
                    assert_eq!(node, "mid");
                    break;
                }
                Verdict::Finished => panic!("a failure never finishes"),
            }
        }
        assert_eq!(delays, [100, 200, 400]);
    }

    #[test]
    fn test_verdict_success_finishes_or_restarts_always_and_resets() {
        let (v, n) = verdict(&spec(RestartPolicy::OnFailure, 3), 2, None);
        assert_eq!((v, n), (Verdict::Finished, 0));
        let (v, n) = verdict(&spec(RestartPolicy::Always, 3), 2, None);
        assert_eq!(
            v,
            Verdict::Restart {
                delay: Duration::from_millis(100),
                failed: None
            }
        );
        assert_eq!(n, 0);
    }

    #[test]
    fn test_verdict_never_fails_at_the_first_failure_and_zero_max_is_unlimited() {
        let (v, _) = verdict(&spec(RestartPolicy::Never, 0), 0, failed("a"));
        assert!(matches!(v, Verdict::Fail { .. }));
        let (v, n) = verdict(&spec(RestartPolicy::OnFailure, 0), 10_000, failed("a"));
        assert!(matches!(v, Verdict::Restart { .. }));
        assert_eq!(n, 10_001);
    }
}
