//! Commands: a command owns its run (the pidfd, the leaf cgroup, the watch on the leaf)
//! and its output rings; here are feeding the supervisor, carrying out what it decides,
//! and spawning a run. Reaping is in `exits.rs`, output in `output.rs`.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use rustix::process::Signal as RSignal;

use shuma_card::protocol::{CmdState, CommandInfo};
use shuma_card::{CommandSpec, EventKind, LogTarget};

use super::Runtime;
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
    /// Without a cgroup: the other processes of a run being stopped (`stop.rs`).
    pub stragglers: Vec<super::stop::Straggler>,
    /// When the stragglers get SIGKILL: the end of the stop's grace.
    pub stragglers_kill_at: Option<Instant>,
    /// Readiness across runs: ready or not, STATUS=, the notify socket (`ready.rs`).
    pub ready: super::ready::ReadyState,
    /// Health checks and readiness probes (`probes.rs`).
    pub probe: super::probes::ProbeState,
    /// Before its first start: the dependencies it waits for, as indices into
    /// `spec.after` (`deps.rs`); shown as names by [`Command::info`].
    pub waiting_for: Vec<u32>,
    /// Its workspace is stopping and this command waits for what is after it to stop
    /// first, with the grace to stop it with (`deps.rs`).
    pub stop_queued: Option<Option<std::time::Duration>>,
    /// `shuma restart`: start it again once this run has stopped (`by_hand.rs`).
    pub start_queued: bool,
    /// The pipeline it is a node of, and that pipeline's name (`pipelines.rs`).
    pub pipeline: Option<(crate::ids::PipelineId, String)>,
    /// A pipeline node's pipes for its next spawn, set by the pipeline just before it
    /// starts the node and taken by the spawn.
    pub stdio: Option<NodeStdio>,
}

/// The pipe ends a pipeline hands a node at spawn; a stream left `None` goes where the
/// node's `log` says (stdin: /dev/null).
#[derive(Default)]
pub struct NodeStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
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
            stragglers: Vec::new(),
            stragglers_kill_at: None,
            ready: Default::default(),
            probe: Default::default(),
            waiting_for: Vec::new(),
            stop_queued: None,
            start_queued: false,
            pipeline: None,
            stdio: None,
        }
    }

    /// Is any process of the command still alive (its run, or a straggler of a stop),
    /// or its supervisor not done?
    pub fn busy(&self) -> bool {
        self.run.is_some() || self.sup.is_live() || !self.stragglers.is_empty()
    }

    /// The dependencies it waits for, as written in the card.
    pub fn waiting_names(&self) -> Vec<String> {
        self.waiting_for
            .iter()
            .filter_map(|i| self.spec.after.get(*i as usize))
            .map(|d| d.to_string())
            .collect()
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
            ready: self.ready.ready,
            status: self.ready.status.clone(),
            health: self.probe.health(&self.spec),
            waiting_for: self.waiting_names(),
            pipeline: self.pipeline.as_ref().map(|(_, name)| name.clone()),
        }
    }
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
                    self.ready_on_spawn(id, now);
                    Applied::Spawned { pid }
                }
                Err(StartError { message, transient }) => {
                    let message = elide(message, MAX_ERROR_TEXT);
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
                // Its workspace is stopping and this command waits its turn: no restart.
                let queued = self
                    .table
                    .commands
                    .get_mut(&id)
                    .and_then(|c| c.stop_queued.take());
                if let Some(grace) = queued {
                    return self.command_event(id, Event::Stop { grace }, now);
                }
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
                self.signal_leaf(id, signal);
                self.sweep_session(id, signal);
                if let Some(cmd) = self.table.commands.get_mut(&id) {
                    cmd.stragglers_kill_at = Some(now + grace);
                }
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
                self.pipeline_node_ended(id, now);
                self.workspace_progress(ws);
                self.deps_on_final(id, now);
                Applied::Nothing
            }
            Action::Finished => {
                self.prune_if_adhoc(ws, id);
                self.pipeline_node_ended(id, now);
                self.workspace_progress(ws);
                // A restart's start comes first: what requires the command then finds
                // it starting, not stopped, and keeps running.
                self.start_if_queued(id, now);
                self.deps_on_final(id, now);
                Applied::Nothing
            }
        }
    }

    /// Send `signal` to the run's process group (the child called setsid, so its pgid
    /// is its pid, which cannot be reused while the child is unreaped), and to the
    /// process itself through its pidfd in case it left the group. With `kill_mode =
    /// "process"`, to the process alone (systemd's `KillMode=process`: sshd's sessions
    /// outlive a restart of sshd).
    pub(crate) fn signal_run(&mut self, id: CommandId, signal: i32) {
        let Some(cmd) = self.table.commands.get(&id) else {
            return;
        };
        let Some(run) = cmd.run.as_ref() else {
            return;
        };
        if cmd.spec.kill_mode == shuma_card::KillMode::ControlGroup {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(-run.pid),
                nix::sys::signal::Signal::try_from(signal).ok(),
            );
        }
        if let Some(sig) = RSignal::from_named_raw(signal) {
            let _ = rustix::process::pidfd_send_signal(&run.pidfd, sig);
        }
    }

    /// Send `signal` to every other process of the run's leaf cgroup (those that left
    /// its process group: an ssh session calls setsid), as systemd's `KillMode=
    /// control-group` stop does; not with `kill_mode = "process"`.
    fn signal_leaf(&self, id: CommandId, signal: i32) {
        let Some(cmd) = self.table.commands.get(&id) else {
            return;
        };
        let Some(run) = cmd.run.as_ref() else { return };
        let Some(leaf) = run.leaf.as_ref() else {
            return;
        };
        if cmd.spec.kill_mode != shuma_card::KillMode::ControlGroup {
            return;
        }
        let Ok(sig) = nix::sys::signal::Signal::try_from(signal) else {
            return;
        };
        for pid in leaf.procs().unwrap_or_default() {
            if pid != run.pid {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
            }
        }
    }

    /// Grace is over: SIGKILL the group and, with cgroups, everything in the leaf
    /// (a daemon that double-forked and left the group is still in it); without, every
    /// process of the run's session (`stop.rs`).
    fn kill_run(&mut self, id: CommandId) {
        self.signal_run(id, libc::SIGKILL);
        self.sweep_session(id, libc::SIGKILL);
        self.signal_stragglers(id, libc::SIGKILL);
        if let Some(leaf) = self
            .table
            .commands
            .get(&id)
            .filter(|c| c.spec.kill_mode == shuma_card::KillMode::ControlGroup)
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
        let creds = super::creds::resolve(&spec)?;
        let runs_as = creds.as_ref().map(|(uid, ..)| *uid);
        let owner = creds.as_ref().map(|(uid, gid, _)| (*uid, *gid));
        let mut env = spec.env.clone();
        env.extend(self.ready_env(id)?);
        let mut plan = ExecPlan::new(&spec.argv, &env, spec.cwd.as_deref(), creds)
            .map_err(|e| e.to_string())?;
        if spec.watchdog_ms.is_some() {
            plan = plan.with_pid_env("WATCHDOG_PID");
        }
        if !spec.rlimits.is_empty() {
            let limits: Vec<_> = spec
                .rlimits
                .iter()
                .filter_map(|r| Some((super::setup::rlimit_resource(&r.resource)?, r.soft, r.hard)))
                .collect();
            plan = plan.with_rlimits(&limits);
        }
        // Its directories, before anything of it runs (`RuntimeDirectory=` and kin).
        super::setup::make_directories(&spec.directories, owner)?;
        // stdio: /dev/null in, out and err to pipes (ring), the console, or a file;
        // a pipeline node's connected streams to the pipes its pipeline made.
        let stdio = self
            .table
            .commands
            .get_mut(&id)
            .and_then(|c| c.stdio.take())
            .unwrap_or_default();
        let mut pipes: Vec<(bool, OwnedFd)> = Vec::new();
        let out_w = match stdio.stdout {
            Some(fd) => fd,
            None => log_fd(&spec.log, false, runs_as, &mut pipes)?,
        };
        let err_w = match stdio.stderr {
            Some(fd) => fd,
            None => log_fd(&spec.log, true, runs_as, &mut pipes)?,
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
        // s6's notification fd: the service writes a newline to fd N when it is ready.
        let ready_pipe = match spec.ready {
            shuma_card::Readiness::Fd(n) => Some((pipe()?, n)),
            _ => None,
        };
        let extra = ready_pipe.as_ref().map(|((_, w), n)| (w.as_fd(), *n));
        let spawned = self
            .procs
            .spawn(
                id,
                &plan,
                (
                    stdio.stdin.as_ref().map(|fd| fd.as_fd()),
                    out_w.as_fd(),
                    err_w.as_fd(),
                ),
                extra,
                target.as_ref(),
            )
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
        if let Some(((r, w), _)) = ready_pipe {
            drop(w);
            self.ready_fd_open(id, r);
        }
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
            cmd.ready.uid = runs_as.unwrap_or_else(|| rustix::process::geteuid().as_raw());
            cmd.pipe_ids = pipe_ids;
            cmd.run = Some(Run {
                pid,
                pidfd: spawned.pidfd,
                started: Instant::now(),
                started_unix_ms: super::workspaces::unix_ms(),
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
}
/// Most bytes of a spawn error kept. It may quote the card's argv[0] or user, each of
/// which can be nearly a frame long, and it is journaled twice (could not start, failed),
/// kept as the command's reason and sent to a `run` client: unbounded, one failure
/// would not fit a frame.
const MAX_ERROR_TEXT: usize = 4096;

/// `text` cut to at most about `max` bytes by dropping its middle, so both the subject
/// at its start and the errno at its end stay readable.
fn elide(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let floor = |mut i: usize| {
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let head = floor(max / 2);
    let tail = floor(text.len() - max / 2);
    format!(
        "{}…({} bytes left out)…{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
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
    pub(super) fn os(context: impl std::fmt::Display, e: &std::io::Error) -> StartError {
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

/// Where one stream of a command goes by its `log`: the write end of a new pipe whose
/// read end joins `pipes` (a ring), arje's own stdout or stderr (the console), or the
/// log file.
fn log_fd(
    log: &LogTarget,
    is_err: bool,
    runs_as: Option<u32>,
    pipes: &mut Vec<(bool, OwnedFd)>,
) -> Result<OwnedFd, StartError> {
    match log {
        LogTarget::Ring => {
            let (r, w) = pipe()?;
            pipes.push((is_err, r));
            Ok(w)
        }
        LogTarget::Console if is_err => rustix::io::fcntl_dupfd_cloexec(std::io::stderr(), 3)
            .map_err(|e| StartError::os("dup stderr", &e.into())),
        LogTarget::Console => rustix::io::fcntl_dupfd_cloexec(std::io::stdout(), 3)
            .map_err(|e| StartError::os("dup stdout", &e.into())),
        LogTarget::File(path) => Ok(open_log_file(path, runs_as)?),
    }
}

/// A pipe whose read end is non-blocking (ours) and write end blocking (the child's).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), StartError> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| StartError::os("pipe", &e.into()))?;
    // A new pipe's read end has no status flags but O_RDONLY (which F_SETFL keeps),
    // so no F_GETFL round trip is needed.
    rustix::fs::fcntl_setfl(&r, rustix::fs::OFlags::NONBLOCK)
        .map_err(|e| StartError::os("fcntl", &e.into()))?;
    Ok((r, w))
}

/// Opens a `file:PATH` log for appending, creating it if absent (mode 0666 less the
/// umask, as before). Never blocks: `O_NONBLOCK` for the open (a FIFO without a reader
/// fails with ENXIO instead of blocking the loop forever), cleared before the child gets
/// the fd.
///
/// arje opens the file as root. For a command with a user or group (`runs_as`: the uid
/// it runs as), the path may lie in a directory that user controls, who could swap the
/// file for a symlink to a root-only file and have root append to it. So then:
/// - no symlink anywhere in the path: `openat2(RESOLVE_NO_SYMLINKS)`, or, on a kernel
///   without openat2 (before 5.6), `O_NOFOLLOW` on the last component;
/// - the opened file (`fstat`) must be owned by that user (who could write it anyway),
///   or by arje's own user with one link only (so not a hard link the user made to a
///   file it does not own); a file of any third user is refused.
///
/// Opening with the command's credentials instead would need a credential switch in PID
/// 1's only thread (or work between clone and exec); the checks give the same answer for
/// the files that matter. docs/CARDS.md (`log`) and docs/SECURITY.md say so.
pub(super) fn open_log_file(path: &str, runs_as: Option<u32>) -> Result<OwnedFd, String> {
    use rustix::fs::{Mode, OFlags, ResolveFlags, CWD};
    use rustix::io::Errno;
    let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::CLOEXEC;
    let flags = flags | OFlags::NONBLOCK;
    let mode = Mode::from_raw_mode(0o666);
    let opened = match runs_as {
        None => rustix::fs::open(path, flags, mode),
        Some(_) => {
            let flags = flags | OFlags::NOFOLLOW;
            match rustix::fs::openat2(CWD, path, flags, mode, ResolveFlags::NO_SYMLINKS) {
                Err(Errno::NOSYS) => rustix::fs::open(path, flags, mode),
                other => other,
            }
        }
    };
    let fd = match (opened, runs_as) {
        (Ok(fd), _) => fd,
        (Err(Errno::LOOP), Some(uid)) => {
            let why = format!("its path has a symlink, and the command runs as uid {uid}");
            return Err(format!("log file {path}: refused: {why}"));
        }
        (Err(e), _) => return Err(format!("open log file {path}: {e}")),
    };
    if let Some(uid) = runs_as {
        let st = rustix::fs::fstat(&fd).map_err(|e| format!("fstat log file {path}: {e}"))?;
        let euid = rustix::process::geteuid().as_raw();
        if st.st_uid == euid && st.st_uid != uid && st.st_nlink != 1 {
            return Err(format!(
                "log file {path}: refused: arje's file with {} links (a hard link), and the command runs as uid {uid}",
                st.st_nlink
            ));
        }
        if st.st_uid != uid && st.st_uid != euid {
            return Err(format!(
                "log file {path}: refused: owned by uid {}, neither the command's uid {uid} nor arje's",
                st.st_uid
            ));
        }
    }
    // The child's writes block as a file's should: only the open was non-blocking.
    rustix::fs::fcntl_setfl(&fd, OFlags::APPEND)
        .map_err(|e| format!("log file {path}: fcntl: {e}"))?;
    Ok(fd)
}

/// A run's leaf cgroup: `<id>-<command>`. The id first: a command may be called
/// `memory` or `cpu`, and `memory.3` would look like a kernel file of the workspace.
pub(crate) fn leaf_name(id: CommandId, command: &str) -> String {
    format!("{id}-{command}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_elide_long_error_keeps_start_and_errno_within_bound() {
        let error = format!("/{} execve: No such file or directory", "é".repeat(100_000));

        let short = elide(error, MAX_ERROR_TEXT);

        assert!(short.len() <= MAX_ERROR_TEXT + 64, "{}", short.len());
        assert!(short.starts_with("/é"));
        assert!(short.ends_with("execve: No such file or directory"));
        assert!(short.contains("bytes left out"));
    }

    #[test]
    fn test_elide_short_text_unchanged() {
        assert_eq!(elide("no such user x".into(), 64), "no such user x");
    }
}
