//! One handler per control request.

use std::time::Duration;

use shuma_card::protocol::{
    ErrorCode, Request, Response, StatusInfo, Stream, WorkspaceDetail, PROTOCOL_VERSION,
};

use super::Runtime;
use crate::control::Follow;
use crate::Outcome;

/// Most events in one `Events` frame, so a frame stays far below the size cap.
const EVENTS_PER_FRAME: usize = 512;

fn err(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error {
        code,
        message: message.into(),
    }
}

impl Runtime {
    pub(crate) fn handle_request(&mut self, conn: u64, req: Request) {
        // Every exit that happened before a request is reaped before it is answered, so
        // `ping` is a barrier. Not for `Run`, the hot path: with 10,000 children the scan
        // costs milliseconds, and the deferred scan (20 ms) comes soon enough.
        if self.orphan_scan_pending && !matches!(req, Request::Run { .. }) {
            self.reap_orphans();
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.hello_done {
            match req {
                Request::Hello { version, .. } if version == PROTOCOL_VERSION => {
                    c.hello_done = true;
                    let server = format!("arje-init {}", env!("CARGO_PKG_VERSION"));
                    self.reply(
                        conn,
                        Response::Hello {
                            version: PROTOCOL_VERSION,
                            server,
                        },
                    );
                }
                Request::Hello { version, .. } => {
                    c.fail(
                        ErrorCode::Version,
                        format!("protocol version {version} is not supported: this arje-init speaks version {PROTOCOL_VERSION}"),
                    );
                    self.service_conn(conn);
                }
                _ => {
                    c.fail(
                        ErrorCode::BadFrame,
                        "the first request must be Hello".into(),
                    );
                    self.service_conn(conn);
                }
            }
            return;
        }
        if c.follow != Follow::None {
            // A connection that follows or waits is a one-way stream from here on.
            c.fail(ErrorCode::BadFrame, "no requests while following".into());
            self.service_conn(conn);
            return;
        }
        let resp = match req {
            Request::Hello { .. } => err(ErrorCode::BadFrame, "Hello was already exchanged"),
            Request::Ping => Response::Pong,
            Request::Status => Response::Status(self.status()),
            Request::WsCreate { spec } => {
                let name = spec.name.clone();
                match self.create_workspace_inner(spec) {
                    Ok(warnings) => Response::Created { name, warnings },
                    Err((code, msg)) => err(code, msg),
                }
            }
            Request::WsList => {
                Response::Workspaces(self.workspaces.values().map(|w| w.info(self)).collect())
            }
            Request::WsShow { name } => match self.workspaces.get(&name) {
                Some(w) => Response::Workspace(Box::new(WorkspaceDetail {
                    info: w.info(self),
                    spec: w.spec.clone(),
                    commands: w
                        .commands
                        .iter()
                        .filter_map(|id| self.commands.get(id))
                        .map(|c| c.info())
                        .collect(),
                    unenforced: w.unenforced.clone(),
                })),
                None => err(ErrorCode::NotFound, format!("no workspace {name}")),
            },
            Request::WsStop { name, grace_ms } => {
                if !self.workspaces.contains_key(&name) {
                    err(ErrorCode::NotFound, format!("no workspace {name}"))
                } else {
                    // The answer comes when the workspace is gone (maybe right now).
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.follow = Follow::WsStopped(name.clone());
                    }
                    self.stop_workspace(&name, grace_ms.map(Duration::from_millis), false);
                    return;
                }
            }
            Request::WsSet { name, key, value } => match self.set_limit(&name, &key, &value) {
                Ok(()) => Response::Ok,
                Err((code, msg)) => err(code, msg),
            },
            Request::WsStats { name } => match self.workspaces.get(&name) {
                Some(_) => Response::Stats {
                    name: name.clone(),
                    samples: self.stats_of(&name),
                },
                None => err(ErrorCode::NotFound, format!("no workspace {name}")),
            },
            Request::Run {
                workspace,
                command,
                wait,
            } => match self.run_in_workspace(&workspace, command) {
                Ok(id) => {
                    if wait {
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.follow = Follow::Exit(id);
                        }
                    }
                    self.command_event(
                        id,
                        crate::supervise::Event::Start,
                        std::time::Instant::now(),
                    );
                    if wait {
                        return;
                    }
                    match self.commands.get(&id).and_then(|c| c.run.as_ref()) {
                        Some(run) => Response::Started { id, pid: run.pid },
                        None => err(
                            ErrorCode::Internal,
                            self.commands
                                .get(&id)
                                .and_then(|c| c.info().reason)
                                .unwrap_or_else(|| "could not start".into()),
                        ),
                    }
                }
                Err((code, msg)) => err(code, msg),
            },
            Request::Ps { workspace } => {
                if let Some(ws) = &workspace {
                    if !self.workspaces.contains_key(ws) {
                        self.reply(conn, err(ErrorCode::NotFound, format!("no workspace {ws}")));
                        return;
                    }
                }
                Response::Commands(
                    self.commands
                        .values()
                        .filter(|c| workspace.as_ref().is_none_or(|w| *w == c.workspace))
                        .map(|c| c.info())
                        .collect(),
                )
            }
            Request::Logs {
                workspace,
                command,
                stream,
                follow,
            } => {
                // The newest command of that name: a service keeps its rings across
                // restarts; `run` one-shots get their own names.
                let found = self
                    .workspaces
                    .get(&workspace)
                    .and_then(|w| {
                        w.commands.iter().rev().find(|id| {
                            self.commands
                                .get(id)
                                .is_some_and(|c| c.spec.name == command)
                        })
                    })
                    .copied();
                let Some(id) = found else {
                    self.reply(
                        conn,
                        err(
                            ErrorCode::NotFound,
                            format!("no command {command} in workspace {workspace}"),
                        ),
                    );
                    return;
                };
                let (out, errc) = match stream {
                    Stream::Stdout => (Some(0), None),
                    Stream::Stderr => (None, Some(0)),
                    Stream::Both => (Some(0), Some(0)),
                };
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.follow = Follow::Logs {
                        command: id,
                        out,
                        err: errc,
                    };
                }
                self.push_logs(id);
                if !follow {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.follow = Follow::None;
                    }
                    Response::End
                } else {
                    return;
                }
            }
            Request::Events { after, follow } => {
                let events = self.journal.after(after.unwrap_or(0));
                let last = events
                    .last()
                    .map_or(after.unwrap_or(0).min(self.journal.last_id()), |e| e.id);
                if let Some(c) = self.conns.get_mut(&conn) {
                    for chunk in events.chunks(EVENTS_PER_FRAME) {
                        c.send(&Response::Events(chunk.to_vec()));
                    }
                    if follow {
                        c.follow = Follow::Events(last);
                    } else {
                        c.send(&Response::End);
                    }
                }
                self.service_conn(conn);
                return;
            }
            Request::Caps => Response::Caps(self.cgroups.capabilities()),
            Request::Shutdown { kind } => match self.cfg.mode {
                shuma_card::protocol::Mode::Pid1 => {
                    self.begin_shutdown(Outcome::Shutdown(kind));
                    Response::Ok
                }
                shuma_card::protocol::Mode::Subreaper => err(
                    ErrorCode::Unsupported,
                    "poweroff, reboot and halt need arje-init as PID 1 (this one is a subreaper)",
                ),
            },
            Request::DaemonReexec { binary } => {
                if self.stopping.is_some() {
                    err(ErrorCode::Invalid, "shutting down: no re-exec")
                } else {
                    let binary = binary.unwrap_or_else(|| "/proc/self/exe".into());
                    // Refuse a binary that cannot be exec'd now, while we can still say so.
                    match std::fs::metadata(&binary) {
                        Ok(m) if m.is_file() => {
                            self.reexec = Some(binary.into());
                            Response::Ok
                        }
                        Ok(_) => err(ErrorCode::Invalid, format!("{binary} is not a file")),
                        Err(e) => err(ErrorCode::NotFound, format!("{binary}: {e}")),
                    }
                }
            }
            Request::TestPanic => self.test_panic(),
        };
        self.reply(conn, resp);
    }

    #[cfg(feature = "test-hooks")]
    fn test_panic(&mut self) -> Response {
        panic!("test panic requested over the control socket");
    }

    #[cfg(not(feature = "test-hooks"))]
    fn test_panic(&mut self) -> Response {
        err(
            ErrorCode::Unsupported,
            "this arje-init was built without test hooks",
        )
    }

    fn status(&self) -> StatusInfo {
        StatusInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id() as i32,
            mode: self.cfg.mode.clone(),
            uptime_ms: self.uptime().as_millis() as u64,
            workspaces: self.workspaces.len() as u32,
            commands: self.commands.len() as u32,
            running: self.commands.values().filter(|c| c.run.is_some()).count() as u32,
            connections: self.conns.len() as u32,
            last_event_id: self.journal.last_id(),
            orphans_reaped: self.orphans_reaped,
        }
    }

    fn set_limit(&mut self, name: &str, key: &str, value: &str) -> Result<(), (ErrorCode, String)> {
        let Some(ws) = self.workspaces.get_mut(name) else {
            return Err((ErrorCode::NotFound, format!("no workspace {name}")));
        };
        let mut limits = ws.spec.limits.clone();
        shuma_card::units::parse_limit(key, value, &mut limits)
            .map_err(|e| (ErrorCode::Invalid, e))?;
        let report = match &ws.cgroup {
            Some(cg) => cg
                .set_limit(key, &limits)
                .map_err(|e| (ErrorCode::Internal, e.to_string()))?,
            None => {
                let file = key.replace('_', ".");
                let why = self
                    .cgroups
                    .unenforced(&limits)
                    .into_iter()
                    .filter(|w| w.starts_with(&file))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err((
                    ErrorCode::Unsupported,
                    format!("workspace {name} has no cgroup, so {key} cannot be enforced: {why}"),
                ));
            }
        };
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
    fn stats_of(&self, name: &str) -> Vec<shuma_card::protocol::StatsSample> {
        let Some(ws) = self.workspaces.get(name) else {
            return Vec::new();
        };
        let mut samples: Vec<_> = ws.stats.iter().cloned().collect();
        if let Some(Ok(mut now)) = ws.cgroup.as_ref().map(|cg| cg.stats()) {
            if let Some(prev) = samples.last() {
                now.cpu_percent_x100 = crate::cgroup::cpu_percent_x100(prev, &now);
            }
            samples.push(now);
        }
        samples
    }
}
