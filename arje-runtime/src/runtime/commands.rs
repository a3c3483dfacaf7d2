//! Commands: a command owns its run (the pidfd, the leaf cgroup, the watch on the leaf)
//! and its output rings; here are spawning a run, reaping it, feeding the supervisor and
//! carrying out what it decides.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use rustix::process::Signal as RSignal;

use shuma_card::protocol::{CmdState, CommandInfo, ErrorCode, Response, Stream};
use shuma_card::{CommandSpec, EventKind, ExitStatus, LogTarget};

use super::Runtime;
use crate::control::Follow;
use crate::ids::{CommandId, PipeId, WatchId, WorkspaceId};
use crate::ring::{Ring, DEFAULT_RING};
use crate::supervise::{Action, Event, State, Supervisor};
use crate::sys::spawn::{CgroupTarget, ExecPlan, SpawnError};
use crate::timers::TimerAction;
use crate::token::Token;

/// A live process of a command.
pub struct Run {
    pub pid: i32,
    /// Registered under `Token::Child`; closing it (the run is dropped when reaped) also
    /// removes it from epoll.
    pub pidfd: OwnedFd,
    pub started: Instant,
    pub started_unix_ms: u64,
    /// Start time in clock ticks since boot: with the pid, what identifies the process
    /// after a crash restart.
    pub start_time_ticks: u64,
    /// The leaf cgroup this run was born in.
    pub leaf: Option<crate::cgroup::Leaf>,
    /// `oom_kill` of the leaf's memory.events last reported.
    pub oom_kills_seen: u64,
    /// `oom_kill` of the leaf when this run started (the leaf is reused across runs).
    pub oom_kills_base: u64,
    /// Cgroup event files watched for this run (the leaf's pids.events).
    pub watch_ids: Vec<WatchId>,
}

pub struct Command {
    pub id: CommandId,
    pub ws: WorkspaceId,
    /// The workspace's name, for events and `shuma ps`.
    pub workspace: String,
    pub spec: CommandSpec,
    pub sup: Supervisor,
    pub run: Option<Run>,
    pub out: Ring,
    pub err: Ring,
    /// Output pipes still open (the process or its descendants may still write).
    pub pipe_ids: Vec<PipeId>,
    pub reason: Option<String>,
    /// Started by `shuma run`, not declared in the card: pruned once finished.
    pub adhoc: bool,
}

impl Command {
    pub fn new(id: CommandId, ws: WorkspaceId, workspace: &str, spec: CommandSpec) -> Self {
        Command {
            id,
            ws,
            workspace: workspace.to_string(),
            sup: Supervisor::new(&spec),
            spec,
            run: None,
            out: Ring::new(DEFAULT_RING),
            err: Ring::new(DEFAULT_RING),
            pipe_ids: Vec::new(),
            reason: None,
            adhoc: false,
        }
    }

    /// Is any process of the command still alive, or its supervisor not done?
    pub fn busy(&self) -> bool {
        self.run.is_some() || self.sup.is_live()
    }

    pub fn info(&self) -> CommandInfo {
        let state = match &self.sup.state {
            State::Idle | State::Backoff { .. } => CmdState::Waiting,
            State::Running { .. } => CmdState::Running,
            State::Stopping { .. } => CmdState::Stopping,
            State::Exited => CmdState::Exited,
            State::Failed { .. } => CmdState::Failed,
        };
        CommandInfo {
            id: self.id.raw(),
            workspace: self.workspace.clone(),
            name: self.spec.name.clone(),
            service: self.spec.kind == shuma_card::CommandKind::Service,
            pid: self.run.as_ref().map(|r| r.pid),
            state,
            restarts: self.sup.restarts,
            last_exit: self.sup.last_exit,
            reason: match &self.sup.state {
                State::Failed { reason } => Some(reason.clone()),
                _ => self.reason.clone(),
            },
            uptime_ms: self
                .run
                .as_ref()
                .map(|r| r.started.elapsed().as_millis() as u64),
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What carrying out a supervisor's action did, for callers that answer a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Nothing,
    Spawned { pid: i32 },
    SpawnFailed { error: String },
}

impl Runtime {
    /// Feed an event to a command's supervisor and carry out what it says.
    pub(crate) fn command_event(&mut self, id: CommandId, event: Event, now: Instant) -> Applied {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return Applied::Nothing;
        };
        let action = cmd.sup.handle(event, now);
        self.apply(id, action, now)
    }

    /// Start a command: its pid, or why it could not start.
    pub(crate) fn start_command(&mut self, id: CommandId, now: Instant) -> Result<i32, String> {
        match self.command_event(id, Event::Start, now) {
            Applied::Spawned { pid } => Ok(pid),
            Applied::SpawnFailed { error } => Err(error),
            Applied::Nothing => Err("the command was not started".into()),
        }
    }

    fn apply(&mut self, id: CommandId, action: Action, now: Instant) -> Applied {
        let Some(cmd) = self.table.commands.get(&id) else {
            return Applied::Nothing;
        };
        let (ws, workspace, name) = (cmd.ws, cmd.workspace.clone(), cmd.spec.name.clone());
        self.store.mark_dirty();
        match action {
            Action::None => Applied::Nothing,
            Action::Spawn => match self.spawn_command(id) {
                Ok(pid) => {
                    if let Some(cmd) = self.table.commands.get_mut(&id) {
                        cmd.sup.started(now);
                    }
                    self.event(EventKind::CommandStarted {
                        workspace,
                        command: name,
                        pid,
                    });
                    Applied::Spawned { pid }
                }
                Err(StartError { message, transient }) => {
                    self.event(EventKind::SpawnFailed {
                        workspace,
                        command: name,
                        error: message.clone(),
                    });
                    self.command_event(
                        id,
                        Event::SpawnFailed {
                            error: message.clone(),
                            transient,
                        },
                        now,
                    );
                    // A service that will try again keeps its `run --wait` clients.
                    let retrying = self
                        .table
                        .commands
                        .get(&id)
                        .is_some_and(|c| !c.sup.is_final());
                    if !retrying {
                        self.notify_exit(id, None);
                    }
                    Applied::SpawnFailed { error: message }
                }
            },
            Action::ScheduleRestart { delay, restarts } => {
                self.timers.add(now + delay, TimerAction::Command(id));
                self.event(EventKind::CommandRestarting {
                    workspace,
                    command: name,
                    delay_ms: delay.as_millis() as u64,
                    restarts,
                });
                Applied::Nothing
            }
            Action::SendStop { signal, grace } => {
                self.signal_run(id, signal);
                self.timers.add(now + grace, TimerAction::Command(id));
                Applied::Nothing
            }
            Action::Kill => {
                self.kill_run(id);
                Applied::Nothing
            }
            Action::GiveUp { reason } => {
                self.prune_if_adhoc(ws, id);
                self.event(EventKind::CommandFailed {
                    workspace,
                    command: name,
                    reason,
                });
                self.workspace_progress(ws);
                Applied::Nothing
            }
            Action::Finished => {
                self.prune_if_adhoc(ws, id);
                self.workspace_progress(ws);
                Applied::Nothing
            }
        }
    }

    /// Send `signal` to the run's process group (the child called setsid, so its pgid
    /// is its pid, which cannot be reused while the child is unreaped), and to the
    /// process itself through its pidfd in case it left the group.
    fn signal_run(&mut self, id: CommandId, signal: i32) {
        let Some(run) = self.table.commands.get(&id).and_then(|c| c.run.as_ref()) else {
            return;
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(-run.pid),
            nix::sys::signal::Signal::try_from(signal).ok(),
        );
        if let Some(sig) = RSignal::from_named_raw(signal) {
            let _ = rustix::process::pidfd_send_signal(&run.pidfd, sig);
        }
    }

    /// Grace is over: SIGKILL the group and, with cgroups, everything in the leaf
    /// (a daemon that double-forked and left the group is still in it).
    fn kill_run(&mut self, id: CommandId) {
        self.signal_run(id, libc::SIGKILL);
        if let Some(leaf) = self
            .table
            .commands
            .get(&id)
            .and_then(|c| c.run.as_ref())
            .and_then(|r| r.leaf.as_ref())
        {
            if let Err(e) = leaf.kill() {
                log::warn!("{e}");
            }
        }
    }

    /// Start one run of a command. Returns the pid.
    fn spawn_command(&mut self, id: CommandId) -> Result<i32, StartError> {
        let cmd = self.table.commands.get(&id).ok_or("no such command")?;
        let spec = cmd.spec.clone();
        let ws = cmd.ws;
        let creds = resolve_creds(&spec)?;
        let plan = ExecPlan::new(&spec.argv, &spec.env, spec.cwd.as_deref(), creds)
            .map_err(|e| e.to_string())?;
        // stdio: /dev/null in; out and err to pipes (ring), the console, or a file.
        let mut pipes: Vec<(bool, OwnedFd)> = Vec::new();
        let (out_w, err_w): (OwnedFd, OwnedFd) = match &spec.log {
            LogTarget::Ring => {
                let (or, ow) = pipe()?;
                let (er, ew) = pipe()?;
                pipes.push((false, or));
                pipes.push((true, er));
                (ow, ew)
            }
            LogTarget::Console => {
                let o = rustix::io::fcntl_dupfd_cloexec(std::io::stdout(), 3)
                    .map_err(|e| StartError::os("dup stdout", &e.into()))?;
                let e = rustix::io::fcntl_dupfd_cloexec(std::io::stderr(), 3)
                    .map_err(|e| StartError::os("dup stderr", &e.into()))?;
                (o, e)
            }
            LogTarget::File(path) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| StartError::os(format!("open log file {path}"), &e))?;
                let f: OwnedFd = f.into();
                let g = f
                    .try_clone()
                    .map_err(|e| StartError::os(format!("dup {path}"), &e))?;
                (f, g)
            }
        };
        let leaf = match self
            .table
            .workspaces
            .get(&ws)
            .and_then(|w| w.cgroup.as_ref())
        {
            Some(cg) => Some(cg.create_leaf(&leaf_name(id, &spec.name)).map_err(|e| {
                let errno = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                    .and_then(std::io::Error::raw_os_error);
                StartError::errno(e.to_string(), errno)
            })?),
            None => None,
        };
        let target = leaf.as_ref().map(|l| CgroupTarget { dir: l.fd() });
        let spawned = self
            .procs
            .spawn(id, &plan, out_w.as_fd(), err_w.as_fd(), target.as_ref())
            .map_err(|e| {
                let errno = match &e {
                    SpawnError::Clone(error) | SpawnError::Child { error, .. } => {
                        error.raw_os_error()
                    }
                    _ => None,
                };
                StartError::errno(format!("{} {}", spec.argv[0], e), errno)
            })?;
        drop(out_w);
        drop(err_w);
        let pid = spawned.pid;
        let (oom_kills_base, watch_ids) = self.watch_leaf(ws, leaf.as_ref());
        let pipe_ids: Vec<PipeId> = pipes
            .into_iter()
            .filter_map(|(is_err, fd)| self.capture.add(&self.reactor, id, is_err, fd))
            .collect();
        if let Err(e) = self.reactor.add(
            spawned.pidfd.as_fd(),
            Token::Child(id),
            super::reactor::Interest::Read,
        ) {
            log::error!("epoll_ctl for the pidfd of pid {pid}: {e}");
        }
        if let Some(cmd) = self.table.commands.get_mut(&id) {
            cmd.pipe_ids = pipe_ids;
            cmd.run = Some(Run {
                pid,
                pidfd: spawned.pidfd,
                started: Instant::now(),
                started_unix_ms: unix_ms(),
                start_time_ticks: crate::persist::boottime_ticks(),
                leaf,
                oom_kills_seen: oom_kills_base,
                oom_kills_base,
                watch_ids,
            });
        }
        Ok(pid)
    }

    /// A run's leaf: its OOM-kill count now (the leaf is reused, so only kills above it
    /// are this run's) and a watch on its pids.events.
    pub(crate) fn watch_leaf(
        &mut self,
        ws: WorkspaceId,
        leaf: Option<&crate::cgroup::Leaf>,
    ) -> (u64, Vec<WatchId>) {
        let Some(leaf) = leaf else {
            return (0, Vec::new());
        };
        let oom_kills = leaf.memory_events().map_or(0, |m| m.oom_kill);
        let watch = leaf
            .open_events_file(crate::cgroup::EventsFile::Pids)
            .ok()
            .and_then(|fd| {
                self.cgroups
                    .add(&self.reactor, ws, crate::cgroup::EventsFile::Pids, fd)
            });
        (oom_kills, watch.into_iter().collect())
    }

    /// A command's pidfd is readable: its process exited. If the orphan scan got to it
    /// first, `run` is already gone and there is nothing to do.
    pub(crate) fn on_child(&mut self, id: CommandId) {
        let Some(run) = self.table.commands.get(&id).and_then(|c| c.run.as_ref()) else {
            return;
        };
        let pid = run.pid;
        if let Some(status) = self.procs.reap_pidfd(pid, run.pidfd.as_fd()) {
            self.on_exit(pid, status);
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
        let Some(id) = self.procs.exited(pid) else {
            return;
        };
        let now = Instant::now();
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
        self.notify_exit(id, Some(status));
        self.command_event(id, Event::Exited { status }, now);
    }

    /// Answer `run --wait` clients of this command.
    fn notify_exit(&mut self, id: CommandId, status: Option<ExitStatus>) {
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

    /// Output is readable on a pipe: into the command's ring, and to its followers.
    pub(crate) fn on_log(&mut self, pipe: PipeId) {
        let Some(chunk) = self.capture.read(pipe) else {
            return;
        };
        let Some(cmd) = self.table.commands.get_mut(&chunk.command) else {
            return;
        };
        if chunk.eof {
            cmd.pipe_ids.retain(|p| *p != pipe);
        }
        if chunk.data.is_empty() {
            return;
        }
        if chunk.is_err {
            &mut cmd.err
        } else {
            &mut cmd.out
        }
        .push(&chunk.data);
        self.push_logs(chunk.command);
    }

    /// Send followers of a command what they have not seen yet.
    fn push_logs(&mut self, cmd_id: CommandId) {
        let followers = self
            .server
            .followers(|f| matches!(f, Follow::Logs { command, .. } if *command == cmd_id));
        let Some(cmd) = self.table.commands.get(&cmd_id) else {
            return;
        };
        for conn_id in followers {
            let Some(conn) = self.server.conn_mut(conn_id) else {
                continue;
            };
            let Follow::Logs { out, err, .. } = conn.follow.clone() else {
                continue;
            };
            let (frames, next) = log_frames(cmd, out, err);
            for (frame, len) in frames {
                let frame = match frame {
                    Response::Log {
                        stream,
                        data,
                        dropped,
                    } => Response::Log {
                        stream,
                        data,
                        dropped: dropped + std::mem::take(&mut conn.dropped),
                    },
                    other => other,
                };
                conn.send_lossy(&frame, len);
            }
            conn.follow = Follow::Logs {
                command: cmd_id,
                out: next.0,
                err: next.1,
            };
            self.server.service(&self.reactor, conn_id);
        }
    }
}

/// Bytes of stdout and stderr a log reader has seen (`None`: that stream is not read).
pub(crate) type Cursors = (Option<u64>, Option<u64>);

/// The log frames a reader with cursors `out`/`err` (bytes of stdout/stderr already
/// seen; `None`: not read) has not seen, each with its data length, and the cursors after
/// them.
pub(crate) fn log_frames(
    cmd: &Command,
    out: Option<u64>,
    err: Option<u64>,
) -> (Vec<(Response, u64)>, Cursors) {
    let mut frames = Vec::new();
    let mut next = (out, err);
    for (cursor, ring, stream, slot) in [
        (out, &cmd.out, Stream::Stdout, &mut next.0),
        (err, &cmd.err, Stream::Stderr, &mut next.1),
    ] {
        let Some(from) = cursor else { continue };
        let (data, lost) = ring.read_from(from);
        if data.is_empty() && lost == 0 {
            continue;
        }
        let len = data.len() as u64;
        frames.push((
            Response::Log {
                stream,
                data,
                dropped: lost,
            },
            len,
        ));
        *slot = Some(ring.written());
    }
    (frames, next)
}

/// Why a run did not start, and whether a later try may work.
#[derive(Debug)]
pub(crate) struct StartError {
    pub message: String,
    /// For want of a resource that comes back (see [`StartError::errno`]): a service
    /// then follows its restart policy instead of failing for good.
    pub transient: bool,
}

impl StartError {
    /// Transient when `errno` says a resource ran short: fds (EMFILE, ENFILE), memory
    /// (ENOMEM), a process slot (EAGAIN: RLIMIT_NPROC, or pids.max in the workspace).
    fn errno(message: String, errno: Option<i32>) -> StartError {
        let transient = matches!(
            errno,
            Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EAGAIN)
        );
        StartError { message, transient }
    }

    /// `context: error`, transient as [`StartError::errno`] says.
    fn os(context: impl std::fmt::Display, e: &std::io::Error) -> StartError {
        StartError::errno(format!("{context}: {e}"), e.raw_os_error())
    }
}

/// A mistake in the spec (or a state the runtime is in): not transient.
impl From<String> for StartError {
    fn from(message: String) -> StartError {
        StartError {
            message,
            transient: false,
        }
    }
}

impl From<&str> for StartError {
    fn from(message: &str) -> StartError {
        StartError::from(message.to_string())
    }
}

/// A pipe whose read end is non-blocking (ours) and write end blocking (the child's).
fn pipe() -> Result<(OwnedFd, OwnedFd), StartError> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| StartError::os("pipe", &e.into()))?;
    // A new pipe's read end has no status flags but O_RDONLY (which F_SETFL keeps),
    // so no F_GETFL round trip is needed.
    rustix::fs::fcntl_setfl(&r, rustix::fs::OFlags::NONBLOCK)
        .map_err(|e| StartError::os("fcntl", &e.into()))?;
    Ok((r, w))
}

/// The card's user and group, resolved now (the child cannot read /etc/passwd). A
/// lookup that failed for want of fds or memory is transient.
fn resolve_creds(spec: &CommandSpec) -> Result<Option<(u32, u32, Vec<u32>)>, StartError> {
    if spec.user.is_none() && spec.group.is_none() {
        return Ok(None);
    }
    let user = match &spec.user {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .map_err(|e| {
                    StartError::errno(format!("look up user {name}: {e}"), Some(e as i32))
                })?
                .ok_or_else(|| format!("no such user {name}"))?,
        ),
        None => None,
    };
    let gid = match &spec.group {
        Some(name) => nix::unistd::Group::from_name(name)
            .map_err(|e| StartError::errno(format!("look up group {name}: {e}"), Some(e as i32)))?
            .ok_or_else(|| format!("no such group {name}"))?
            .gid
            .as_raw(),
        None => user.as_ref().map_or(0, |u| u.gid.as_raw()),
    };
    let uid = user
        .as_ref()
        .map_or(rustix::process::geteuid().as_raw(), |u| u.uid.as_raw());
    Ok(Some((uid, gid, vec![gid])))
}

/// A run's leaf cgroup: `<id>-<command>`. The id first: a command may be called
/// `memory` or `cpu`, and `memory.3` would look like a kernel file of the workspace.
pub(crate) fn leaf_name(id: CommandId, command: &str) -> String {
    format!("{id}-{command}")
}
