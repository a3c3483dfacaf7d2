//! One handler per control request. A handler returns its [`Reply`] (or an error);
//! `Runtime::on_request` is the one place that sends it.

use std::time::{Duration, Instant};

use serde::Serialize;
use shuma_card::protocol::{
    ErrorCode, Request, Response, StatsSample, StatusInfo, Stream, WorkspaceDetail, MAX_FRAME,
};

use super::output::log_frames;
use super::{Lifecycle, Runtime};
use crate::access::Access;
use crate::control::Follow;
use crate::ids::ConnId;
use crate::Outcome;

/// Most events in one `Events` frame, so a frame stays far below the size cap.
const EVENTS_PER_FRAME: usize = 512;

/// Bytes of items in one frame of a paged reply (`ps`, `ws show`): half the frame cap,
/// so the frame's own fields always fit beside them.
const PAGE_BYTES: usize = MAX_FRAME / 2;

/// What a handler answers.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Frames to send now, in order.
    Frames(Vec<Response>),
    /// Frames that acknowledge a change: sent at the end of the turn, once the /run
    /// snapshot holds the change (docs/STATE.md, "What an answer promises").
    Saved(Vec<Response>),
    /// Frames to send now, then the connection follows something (an exit, a workspace's
    /// removal, logs, events) and more comes later.
    Follow {
        frames: Vec<Response>,
        follow: Follow,
    },
    /// An error, then close the connection.
    Close { code: ErrorCode, message: String },
}

type ReqError = (ErrorCode, String);

fn one(resp: Response) -> Result<Reply, ReqError> {
    Ok(Reply::Frames(vec![resp]))
}

/// One frame acknowledging a change, sent once the /run snapshot holds it.
fn saved(resp: Response) -> Result<Reply, ReqError> {
    Ok(Reply::Saved(vec![resp]))
}

fn not_found(what: String) -> ReqError {
    (ErrorCode::NotFound, what)
}

/// Split `items` into frames of at most [`PAGE_BYTES`] of encoded items each (at least
/// one item per frame, and at least one frame).
pub(crate) fn paged<T: Serialize>(
    items: Vec<T>,
    mut frame: impl FnMut(Vec<T>) -> Response,
) -> Vec<Response> {
    let mut frames = Vec::new();
    let mut page = Vec::new();
    let mut bytes = 0;
    for item in items {
        let size = postcard::experimental::serialized_size(&item).unwrap_or(PAGE_BYTES);
        if !page.is_empty() && bytes + size > PAGE_BYTES {
            frames.push(frame(std::mem::take(&mut page)));
            bytes = 0;
        }
        bytes += size;
        page.push(item);
    }
    if !page.is_empty() || frames.is_empty() {
        frames.push(frame(page));
    }
    frames
}

impl Runtime {
    pub(crate) fn handle_request(&mut self, conn: ConnId, req: Request) -> Result<Reply, ReqError> {
        // Every exit that happened before a request is reaped before it is answered, so
        // `ping` is a barrier. Not for `Run`, the hot path: with 10,000 children the scan
        // costs milliseconds, and the deferred scan (20 ms) comes soon enough.
        if self.procs.scan_pending() && !matches!(req, Request::Run { .. }) {
            self.reap_orphans();
        }
        if !self
            .server
            .admit(&self.reactor, &mut self.timers, conn, &req)
        {
            return Ok(Reply::Frames(Vec::new()));
        }
        let access = self.server.access(conn);
        let mut reply = self.handle(req)?;
        if access != Some(Access::Full) {
            if let Reply::Frames(frames) | Reply::Saved(frames) | Reply::Follow { frames, .. } =
                &mut reply
            {
                frames.iter_mut().for_each(crate::access::redact);
            }
        }
        Ok(reply)
    }

    /// The handlers proper: a request in, its reply out. No connection is touched here.
    pub(crate) fn handle(&mut self, req: Request) -> Result<Reply, ReqError> {
        match req {
            Request::Hello { .. } => Ok(Reply::Close {
                code: ErrorCode::BadFrame,
                message: "Hello was already exchanged".into(),
            }),
            Request::Ping => one(Response::Pong),
            Request::WaitReady {
                workspace,
                command,
                timeout_ms,
            } => self.wait_ready(&workspace, command.as_deref(), timeout_ms),
            Request::Status => one(Response::Status(self.status())),
            Request::WsCreate { spec } => {
                let name = spec.name.clone();
                let created = self.create_workspace_inner(spec)?;
                saved(Response::Created {
                    name,
                    warnings: created.warnings,
                    failed: created.failed,
                })
            }
            Request::WsList => {
                let cmds = &self.table.commands;
                let list = self
                    .table
                    .workspaces
                    .values()
                    .map(|w| w.info(cmds))
                    .collect();
                one(Response::Workspaces(list))
            }
            Request::WsShow { name } => self.ws_show(&name),
            Request::WsStop { name, grace_ms } => {
                let id = self
                    .table
                    .id_of(&name)
                    .ok_or_else(|| not_found(format!("no workspace {name}")))?;
                self.stop_workspace(id, grace_ms.map(Duration::from_millis), false);
                // The answer comes when the workspace is gone, which may be now.
                if !self.table.workspaces.contains_key(&id) {
                    return saved(Response::Ok);
                }
                Ok(Reply::Follow {
                    frames: Vec::new(),
                    follow: Follow::WsStopped(id),
                })
            }
            Request::WsSet { name, key, value } => {
                self.set_limit(&name, &key, &value)?;
                saved(Response::Ok)
            }
            Request::WsStats { name } => {
                let samples = self.stats_of(&name)?;
                self.watch_stats(Instant::now());
                one(Response::Stats { name, samples })
            }
            Request::Run {
                workspace,
                command,
                wait,
            } => {
                let id = self.run_in_workspace(&workspace, command)?;
                // An exit is only ever seen by a later turn, so following after the start
                // misses nothing.
                let pid = self
                    .start_command(id, Instant::now())
                    .map_err(|e| (ErrorCode::Internal, e))?;
                if wait {
                    return Ok(Reply::Follow {
                        frames: Vec::new(),
                        follow: Follow::Exit(id),
                    });
                }
                // Not held for the snapshot: waiting for the /run write made `run` 25-45%
                // slower (docs/BENCHMARKS.md). The command is in the snapshot within
                // RUN_EVERY, and with cgroups a crash before that finds its process in
                // its leaf and adopts it (`strays.rs`); docs/STATE.md says what is
                // promised.
                one(Response::Started { id: id.raw(), pid })
            }
            Request::Ps { workspace } => {
                let ws = match &workspace {
                    Some(name) => Some(
                        self.table
                            .id_of(name)
                            .ok_or_else(|| not_found(format!("no workspace {name}")))?,
                    ),
                    None => None,
                };
                let infos: Vec<_> = self
                    .table
                    .commands
                    .values()
                    .filter(|c| ws.is_none_or(|w| w == c.ws))
                    .map(|c| c.info())
                    .collect();
                let mut frames = paged(infos, Response::Commands);
                frames.push(Response::End);
                Ok(Reply::Frames(frames))
            }
            Request::Logs {
                workspace,
                command,
                stream,
                follow,
            } => self.logs(&workspace, &command, stream, follow),
            Request::Events { after, follow } => {
                let after = after.unwrap_or(0);
                let events = self.journal.after(after);
                let last = events
                    .last()
                    .map_or(after.min(self.journal.last_id()), |e| e.id);
                // At most 512 events and half a frame of them per frame: one event may
                // be a few KiB (a quoted error), and 512 of those would not fit.
                let mut frames: Vec<Response> = events
                    .chunks(EVENTS_PER_FRAME)
                    .flat_map(|c| paged(c.to_vec(), Response::Events))
                    .collect();
                if follow {
                    return Ok(Reply::Follow {
                        frames,
                        follow: Follow::Events(last),
                    });
                }
                frames.push(Response::End);
                Ok(Reply::Frames(frames))
            }
            Request::Caps => one(Response::Caps(self.cgroups.tree.capabilities())),
            Request::Shutdown { kind } => match self.cfg.mode {
                shuma_card::protocol::Mode::Pid1 => {
                    self.begin_shutdown(Outcome::Shutdown(kind));
                    one(Response::Ok)
                }
                shuma_card::protocol::Mode::Subreaper => Err((
                    ErrorCode::Unsupported,
                    "poweroff, reboot and halt need arje-init as PID 1 (this one is a subreaper)"
                        .into(),
                )),
            },
            Request::DaemonReexec { binary } => {
                if self.life != Lifecycle::Running {
                    return Err((ErrorCode::Invalid, "shutting down: no re-exec".into()));
                }
                let binary = binary.unwrap_or_else(|| "/proc/self/exe".into());
                // Refuse a binary that cannot be exec'd now, while we can still say so.
                super::reexec::check_binary(binary.as_ref())?;
                self.life = Lifecycle::Reexec {
                    binary: binary.into(),
                };
                one(Response::Ok)
            }
            Request::TestPanic => self.test_panic(),
            Request::Control {
                workspace,
                command,
                action,
            } => self.control(&workspace, &command, action),
            Request::PipelineSave { spec } => self.pipeline_save(spec),
            Request::PipelineList => one(Response::Pipelines(super::pipelines::saved_infos(
                &self.table.saved_pipelines,
            ))),
            Request::PipelineShow { name } => {
                let spec = self
                    .table
                    .saved_pipelines
                    .get(&name)
                    .ok_or_else(|| not_found(format!("no saved pipeline {name}")))?;
                one(Response::Pipeline(Box::new(spec.clone())))
            }
            Request::PipelineRemove { name } => {
                self.table
                    .saved_pipelines
                    .remove(&name)
                    .ok_or_else(|| not_found(format!("no saved pipeline {name}")))?;
                self.store.mark_dirty();
                saved(Response::Ok)
            }
            Request::PipelineRun { workspace, name } => {
                self.pipeline_run(&workspace, &name)?;
                saved(Response::Ok)
            }
            Request::PipelineStop { workspace, name } => {
                let ws = self
                    .table
                    .id_of(&workspace)
                    .ok_or_else(|| not_found(format!("no workspace {workspace}")))?;
                let id = self.pipeline_named(ws, &name).ok_or_else(|| {
                    not_found(format!("no pipeline {name} in workspace {workspace}"))
                })?;
                self.pipeline_stop(id, None, false, Instant::now());
                saved(Response::Ok)
            }
            Request::PipelinePs { workspace } => {
                let ws = match &workspace {
                    Some(name) => Some(
                        self.table
                            .id_of(name)
                            .ok_or_else(|| not_found(format!("no workspace {name}")))?,
                    ),
                    None => None,
                };
                let mut frames = paged(self.pipeline_infos(ws), Response::Pipelines);
                frames.push(Response::End);
                Ok(Reply::Frames(frames))
            }
        }
    }

    /// A workspace's detail, then its commands paged, then `End`.
    fn ws_show(&self, name: &str) -> Result<Reply, ReqError> {
        let w = self
            .table
            .named(name)
            .ok_or_else(|| not_found(format!("no workspace {name}")))?;
        let infos: Vec<_> = w
            .commands
            .iter()
            .filter_map(|id| self.table.commands.get(id))
            .map(|c| c.info())
            .collect();
        let mut frames = vec![Response::Workspace(Box::new(WorkspaceDetail {
            info: w.info(&self.table.commands),
            spec: w.spec.clone(),
            unenforced: w.unenforced.clone(),
        }))];
        frames.extend(paged(infos, Response::Commands));
        frames.push(Response::End);
        Ok(Reply::Frames(frames))
    }

    /// What a command's rings hold; with `follow`, what comes next too.
    fn logs(
        &self,
        workspace: &str,
        command: &str,
        stream: Stream,
        follow: bool,
    ) -> Result<Reply, ReqError> {
        // The newest command of that name: a service keeps its rings across restarts;
        // `run` one-shots get their own names.
        let cmd = self
            .table
            .named(workspace)
            .and_then(|w| {
                w.commands
                    .iter()
                    .rev()
                    .filter_map(|id| self.table.commands.get(id))
                    .find(|c| c.spec.name == command)
            })
            .ok_or_else(|| not_found(format!("no command {command} in workspace {workspace}")))?;
        let (out, err) = match stream {
            Stream::Stdout => (Some(0), None),
            Stream::Stderr => (None, Some(0)),
            Stream::Both => (Some(0), Some(0)),
        };
        let (frames, (out, err)) = log_frames(cmd, out, err);
        let mut frames: Vec<Response> = frames.into_iter().map(|(f, _)| f).collect();
        if follow {
            return Ok(Reply::Follow {
                frames,
                follow: Follow::Logs {
                    command: cmd.id,
                    out,
                    err,
                },
            });
        }
        frames.push(Response::End);
        Ok(Reply::Frames(frames))
    }

    #[cfg(feature = "test-hooks")]
    fn test_panic(&mut self) -> Result<Reply, ReqError> {
        panic!("test panic requested over the control socket");
    }

    #[cfg(not(feature = "test-hooks"))]
    fn test_panic(&mut self) -> Result<Reply, ReqError> {
        Err((
            ErrorCode::Unsupported,
            "this arje-init was built without test hooks".into(),
        ))
    }

    fn status(&self) -> StatusInfo {
        StatusInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id() as i32,
            mode: self.cfg.mode.clone(),
            uptime_ms: self.uptime().as_millis() as u64,
            workspaces: self.table.workspaces.len() as u32,
            commands: self.table.commands.len() as u32,
            running: self.procs.running() as u32,
            connections: self.server.len() as u32,
            last_event_id: self.journal.last_id(),
            orphans_reaped: self.procs.orphans_reaped(),
            state_not_saved: self.store.failure(),
        }
    }

    fn set_limit(&mut self, name: &str, key: &str, value: &str) -> Result<(), ReqError> {
        let id = self
            .table
            .id_of(name)
            .ok_or_else(|| not_found(format!("no workspace {name}")))?;
        let unenforced = |limits| self.cgroups.tree.unenforced(limits);
        let Some(ws) = self.table.workspaces.get_mut(&id) else {
            return Err(not_found(format!("no workspace {name}")));
        };
        let mut limits = ws.spec.limits.clone();
        shuma_card::units::parse_limit(key, value, &mut limits)
            .map_err(|e| (ErrorCode::Invalid, e))?;
        let Some(cg) = &ws.cgroup else {
            let file = key.replace('_', ".");
            let why = unenforced(&limits)
                .into_iter()
                .filter(|w| w.starts_with(&file))
                .collect::<Vec<_>>()
                .join("; ");
            return Err((
                ErrorCode::Unsupported,
                format!("workspace {name} has no cgroup, so {key} cannot be enforced: {why}"),
            ));
        };
        let report = cg
            .set_limit(key, &limits)
            .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
        ws.spec.limits = limits;
        ws.spec_bytes = shuma_card::snapshot::encode_spec(&ws.spec);
        let mut value = format!("{} = {}", report.file, report.value);
        if report.oom_kill > 0 {
            value.push_str(&format!(
                " (the write made the OOM killer kill {} task(s))",
                report.oom_kill
            ));
        }
        self.event(shuma_card::EventKind::LimitChanged {
            workspace: name.into(),
            key: key.into(),
            value,
        });
        Ok(())
    }

    /// The history, plus a fresh sample so a new workspace has one to show.
    fn stats_of(&self, name: &str) -> Result<Vec<StatsSample>, ReqError> {
        let ws = self
            .table
            .named(name)
            .ok_or_else(|| not_found(format!("no workspace {name}")))?;
        let mut samples: Vec<_> = ws.stats.iter().cloned().collect();
        if let Some(Ok(mut now)) = ws.cgroup.as_ref().map(|cg| cg.stats()) {
            if let Some(prev) = samples.last() {
                now.cpu_percent_x100 = crate::cgroup::cpu_percent_x100(prev, &now);
            }
            samples.push(now);
        }
        Ok(samples)
    }
}
