//! Commands: spawning a run, reaping it, feeding the supervisor, capturing output.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use rustix::process::Signal as RSignal;

use shuma_card::protocol::{CmdState, CommandInfo, Response, Stream};
use shuma_card::{CommandSpec, EventKind, ExitStatus, LogTarget};

use super::Runtime;
use crate::control::Follow;
use crate::ring::{Ring, DEFAULT_RING};
use crate::supervise::{Action, Event, State, Supervisor};
use crate::sys::spawn::{CgroupTarget, ExecPlan};
use crate::timers::TimerAction;
use crate::token::Token;

/// A live process of a command.
pub struct Run {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub started: Instant,
    pub started_unix_ms: u64,
    /// Field 22 of /proc/PID/stat: with the pid, what identifies the process after a
    /// crash restart (0 if unreadable).
    pub start_time_ticks: u64,
    /// The leaf cgroup this run was born in.
    pub leaf: Option<crate::cgroup::Leaf>,
    /// `oom_kill` of the leaf's memory.events last reported.
    pub oom_kills_seen: u64,
    /// `oom_kill` of the leaf when this run started (the leaf is reused across runs).
    pub oom_kills_base: u64,
    /// Cgroup event files watched for this run (the leaf's pids.events).
    pub watch_ids: Vec<u64>,
}

pub struct Command {
    pub id: u64,
    pub workspace: String,
    pub spec: CommandSpec,
    pub sup: Supervisor,
    pub run: Option<Run>,
    pub out: Ring,
    pub err: Ring,
    /// Output pipes still open (the process or its descendants may still write).
    pub pipe_ids: Vec<u64>,
    pub reason: Option<String>,
    /// Started by `shuma run`, not declared in the card: pruned once finished.
    pub adhoc: bool,
}

impl Command {
    pub fn new(id: u64, workspace: &str, spec: CommandSpec) -> Self {
        Command {
            id,
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

    pub fn info(&self) -> CommandInfo {
        let state = match &self.sup.state {
            State::Idle | State::Backoff { .. } => CmdState::Waiting,
            State::Running { .. } => CmdState::Running,
            State::Stopping { .. } => CmdState::Stopping,
            State::Exited => CmdState::Exited,
            State::Failed { .. } => CmdState::Failed,
        };
        CommandInfo {
            id: self.id,
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

impl Runtime {
    /// Feed an event to a command's supervisor and carry out what it says.
    pub(crate) fn command_event(&mut self, id: u64, event: Event, now: Instant) {
        let Some(cmd) = self.commands.get_mut(&id) else {
            return;
        };
        let action = cmd.sup.handle(event, now);
        self.apply(id, action, now);
    }

    fn apply(&mut self, id: u64, action: Action, now: Instant) {
        let Some(cmd) = self.commands.get(&id) else {
            return;
        };
        let (ws, name) = (cmd.workspace.clone(), cmd.spec.name.clone());
        match action {
            Action::None => {}
            Action::Spawn => match self.spawn_command(id) {
                Ok(pid) => {
                    if let Some(cmd) = self.commands.get_mut(&id) {
                        cmd.sup.started(now);
                    }
                    self.event(EventKind::CommandStarted {
                        workspace: ws,
                        command: name,
                        pid,
                    });
                }
                Err(error) => {
                    self.event(EventKind::SpawnFailed {
                        workspace: ws,
                        command: name,
                        error: error.clone(),
                    });
                    self.command_event(id, Event::SpawnFailed { error }, now);
                    self.notify_exit(id, None);
                }
            },
            Action::ScheduleRestart { delay, restarts } => {
                self.timers.add(now + delay, TimerAction::Command(id));
                self.event(EventKind::CommandRestarting {
                    workspace: ws,
                    command: name,
                    delay_ms: delay.as_millis() as u64,
                    restarts,
                });
            }
            Action::SendStop { signal, grace } => {
                self.signal_run(id, signal);
                self.timers.add(now + grace, TimerAction::Command(id));
            }
            Action::Kill => self.kill_run(id),
            Action::GiveUp { reason } => {
                if self.commands.get(&id).is_some_and(|c| c.adhoc) {
                    self.prune_runs(&ws, id);
                }
                self.event(EventKind::CommandFailed {
                    workspace: ws.clone(),
                    command: name,
                    reason,
                });
                self.workspace_progress(&ws);
            }
            Action::Finished => {
                if self.commands.get(&id).is_some_and(|c| c.adhoc) {
                    self.prune_runs(&ws, id);
                }
                self.workspace_progress(&ws);
            }
        }
        self.dirty = true;
    }

    /// Send `signal` to the run's process group (the child called setsid, so its pgid
    /// is its pid, which cannot be reused while the child is unreaped), and to the
    /// process itself through its pidfd in case it left the group.
    fn signal_run(&mut self, id: u64, signal: i32) {
        let Some(run) = self.commands.get(&id).and_then(|c| c.run.as_ref()) else {
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
    fn kill_run(&mut self, id: u64) {
        self.signal_run(id, libc::SIGKILL);
        if let Some(leaf) = self
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
    fn spawn_command(&mut self, id: u64) -> Result<i32, String> {
        let cmd = self.commands.get(&id).ok_or("no such command")?;
        let spec = cmd.spec.clone();
        let ws = cmd.workspace.clone();
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
                    .map_err(|e| format!("dup stdout: {e}"))?;
                let e = rustix::io::fcntl_dupfd_cloexec(std::io::stderr(), 3)
                    .map_err(|e| format!("dup stderr: {e}"))?;
                (o, e)
            }
            LogTarget::File(path) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("open log file {path}: {e}"))?;
                let f: OwnedFd = f.into();
                let g = f.try_clone().map_err(|e| format!("dup {path}: {e}"))?;
                (f, g)
            }
        };
        let leaf = match self.workspaces.get(&ws).and_then(|w| w.cgroup.as_ref()) {
            Some(cg) => Some(
                cg.create_leaf(&leaf_name(id, &spec.name))
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        let target = leaf.as_ref().map(|l| CgroupTarget {
            dir: l.fd(),
            procs: None,
        });
        let stdio: [BorrowedFd<'_>; 3] = [self.dev_null.as_fd(), out_w.as_fd(), err_w.as_fd()];
        let spawned = self
            .spawner
            .spawn(&plan, stdio, target.as_ref())
            .map_err(|e| format!("{} {}", spec.argv[0], e))?;
        drop(out_w);
        drop(err_w);
        let pid = spawned.pid;
        let (oom_kills_base, watch_ids) = self.watch_leaf(&ws, leaf.as_ref());
        let pipe_ids: Vec<u64> = pipes
            .into_iter()
            .filter_map(|(is_err, fd)| self.add_pipe(id, is_err, fd))
            .collect();
        self.pids.insert(pid, id);
        if let Err(e) = self.register(spawned.pidfd.as_fd(), Token::Child(id), false) {
            log::error!("epoll_ctl for the pidfd of pid {pid}: {e}");
        }
        if let Some(cmd) = self.commands.get_mut(&id) {
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
        ws: &str,
        leaf: Option<&crate::cgroup::Leaf>,
    ) -> (u64, Vec<u64>) {
        let Some(leaf) = leaf else {
            return (0, Vec::new());
        };
        let oom_kills = leaf.memory_events().map_or(0, |m| m.oom_kill);
        let watch = leaf
            .open_events_file(crate::cgroup::EventsFile::Pids)
            .ok()
            .and_then(|fd| self.add_watch(ws, crate::cgroup::EventsFile::Pids, fd));
        (oom_kills, watch.into_iter().collect())
    }

    /// Read a command's output pipe from the loop. Returns the pipe's id.
    pub(crate) fn add_pipe(&mut self, command: u64, is_err: bool, fd: OwnedFd) -> Option<u64> {
        let pipe_id = self.next_pipe;
        self.next_pipe += 1;
        self.register(fd.as_fd(), Token::Log(pipe_id), false).ok()?;
        self.pipes.insert(pipe_id, (command, is_err, fd));
        Some(pipe_id)
    }

    /// A command's pidfd is readable: its process exited. Reap exactly that process:
    /// O(1), whatever the number of other children, where `waitid(P_ALL)` scans them
    /// all (2.9 ms with 10,000 live children, against 7 us: docs/BENCHMARKS.md). If the
    /// orphan scan got to it first, `run` is already gone and there is nothing to do.
    pub(crate) fn on_child(&mut self, id: u64) {
        let Some(run) = self.commands.get(&id).and_then(|c| c.run.as_ref()) else {
            return;
        };
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::__WALL;
        let status = match waitid(Id::PIDFd(run.pidfd.as_fd()), flags) {
            Ok(WaitStatus::Exited(_, code)) => ExitStatus::Code(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => ExitStatus::Signal(sig as i32),
            // Not exited after all (a spurious wakeup), or a stop/continue report.
            Ok(_) | Err(nix::Error::EINTR) => return,
            Err(e) => {
                // ECHILD would mean someone else reaped it: record the run as ended
                // rather than keep a dead pid on the books forever.
                log::error!("waitid on the pidfd of pid {}: {e}", run.pid);
                ExitStatus::Signal(0)
            }
        };
        // No EPOLL_CTL_DEL: the pidfd is closed with the run in on_exit, and closing
        // the only reference to a file removes it from epoll.
        let pid = run.pid;
        self.on_exit(pid, status);
    }

    /// A SIGCHLD record arrived. From one of our commands (its pid is in the table) it
    /// needs no scan: the pidfd reaps that command. But SIGCHLDs merge, so the record
    /// may also stand for an orphan that exited meanwhile: the scan is deferred a little
    /// (coalescing the scans of a burst of exits) and run before the next request is
    /// answered. From any other pid, an orphan, it runs now.
    pub(crate) fn on_sigchld(&mut self, pid: i32) {
        // The pidfd event may have been handled first in this batch: a command reaped a
        // moment ago counts as ours too.
        if self.pids.contains_key(&pid) || self.recently_reaped.contains(&pid) {
            if !self.orphan_scan_pending {
                self.orphan_scan_pending = true;
                self.timers
                    .add(Instant::now() + ORPHAN_SCAN_DELAY, TimerAction::OrphanScan);
            }
        } else {
            self.reap_orphans();
        }
    }

    /// Reap every child that has exited: the orphans the kernel reparented to us (we
    /// are PID 1 or a subreaper), and any command whose pidfd event has not been
    /// handled yet (`on_exit` looks its pid up, so it is reported once either way).
    /// Loops until nothing is left.
    pub(crate) fn reap_orphans(&mut self) {
        self.orphan_scan_pending = false;
        loop {
            let status = match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), ExitStatus::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    (pid.as_raw(), ExitStatus::Signal(sig as i32))
                }
                Ok(WaitStatus::StillAlive) => return,
                Ok(_) => continue,
                Err(nix::Error::EINTR) => continue,
                Err(_) => return, // ECHILD: no such children at all.
            };
            self.on_exit(status.0, status.1);
        }
    }

    fn on_exit(&mut self, pid: i32, mut status: ExitStatus) {
        if self.recently_reaped.len() == RECENTLY_REAPED {
            self.recently_reaped.pop_front();
        }
        self.recently_reaped.push_back(pid);
        let Some(id) = self.pids.remove(&pid) else {
            self.orphans_reaped += 1;
            return;
        };
        let now = Instant::now();
        let Some(cmd) = self.commands.get_mut(&id) else {
            return;
        };
        let run = cmd.run.take();
        // A SIGKILL from the kernel's OOM killer looks like any SIGKILL; the leaf's
        // memory.events says whether it was one. Read before the leaf is removed.
        if let (ExitStatus::Signal(9), Some(leaf)) =
            (status, run.as_ref().and_then(|r| r.leaf.as_ref()))
        {
            // The leaf outlives a run: count only this run's kills.
            let base = run.as_ref().map_or(0, |r| r.oom_kills_base);
            if leaf.memory_events().is_ok_and(|m| m.oom_kill > base) {
                status = ExitStatus::OomKilled;
            }
        }
        let (ws, name) = (cmd.workspace.clone(), cmd.spec.name.clone());
        // What the process wrote before it exited is in its pipes now: read it before
        // anyone learns of the exit, so `run --wait` then `logs` sees all of it.
        let pipes = cmd.pipe_ids.clone();
        for p in pipes {
            self.on_log(p);
        }
        for w in run.as_ref().map_or(&[][..], |r| &r.watch_ids) {
            self.drop_watch(*w);
        }
        // The leaf stays for the command's next run (a restart, a rerun): a mkdir and
        // rmdir per run cost more than the spawn itself in the guest benchmark. It goes
        // when the command is pruned or the workspace removed.
        self.event(EventKind::CommandExited {
            workspace: ws.clone(),
            command: name.clone(),
            pid,
            status,
        });
        if status == ExitStatus::OomKilled {
            self.on_oom(&ws, &name);
        }
        self.notify_exit(id, Some(status));
        self.command_event(id, Event::Exited { status }, now);
    }

    /// Answer `run --wait` clients of this command.
    fn notify_exit(&mut self, id: u64, status: Option<ExitStatus>) {
        for conn in self.followers(|f| *f == Follow::Exit(id)) {
            let resp = match status {
                Some(status) => Response::Exited { id, status },
                None => Response::Error {
                    code: shuma_card::protocol::ErrorCode::Internal,
                    message: self
                        .commands
                        .get(&id)
                        .and_then(|c| c.info().reason)
                        .unwrap_or_else(|| "could not start".into()),
                },
            };
            if let Some(c) = self.conns.get_mut(&conn) {
                c.follow = Follow::None;
            }
            self.reply(conn, resp);
        }
    }

    /// Output is readable on a pipe.
    pub(crate) fn on_log(&mut self, pipe_id: u64) {
        let Some((cmd_id, is_err, fd)) = self.pipes.get(&pipe_id) else {
            return;
        };
        let (cmd_id, is_err) = (*cmd_id, *is_err);
        let mut buf = [0u8; 16 * 1024];
        let mut got = Vec::new();
        let mut eof = false;
        // Bounded per turn so one chatty command cannot starve the loop.
        while got.len() < 256 * 1024 {
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if eof {
            // Dropping the read end (its only reference) also removes it from epoll.
            self.pipes.remove(&pipe_id);
            if let Some(cmd) = self.commands.get_mut(&cmd_id) {
                cmd.pipe_ids.retain(|p| *p != pipe_id);
            }
        }
        if got.is_empty() {
            return;
        }
        if let Some(cmd) = self.commands.get_mut(&cmd_id) {
            if is_err { &mut cmd.err } else { &mut cmd.out }.push(&got);
        }
        self.push_logs(cmd_id);
    }

    /// Send followers of a command what they have not seen yet.
    pub(crate) fn push_logs(&mut self, cmd_id: u64) {
        let followers =
            self.followers(|f| matches!(f, Follow::Logs { command, .. } if *command == cmd_id));
        for conn_id in followers {
            let Some(cmd) = self.commands.get(&cmd_id) else {
                return;
            };
            let Some(conn) = self.conns.get_mut(&conn_id) else {
                continue;
            };
            let Follow::Logs { out, err, .. } = conn.follow.clone() else {
                continue;
            };
            let mut next = (out, err);
            for (cursor, ring, stream, slot) in [
                (out, &cmd.out, Stream::Stdout, 0),
                (err, &cmd.err, Stream::Stderr, 1),
            ] {
                let Some(from) = cursor else { continue };
                let (data, lost) = ring.read_from(from);
                if data.is_empty() && lost == 0 {
                    continue;
                }
                let len = data.len() as u64;
                let dropped = lost + std::mem::take(&mut conn.dropped);
                conn.send_lossy(
                    &Response::Log {
                        stream,
                        data,
                        dropped,
                    },
                    len,
                );
                let end = Some(ring.written());
                if slot == 0 {
                    next.0 = end
                } else {
                    next.1 = end
                }
            }
            conn.follow = Follow::Logs {
                command: cmd_id,
                out: next.0,
                err: next.1,
            };
            self.service_conn(conn_id);
        }
    }

    /// Is any process of the command still alive, or output still to be read?
    pub(crate) fn command_busy(&self, id: u64) -> bool {
        self.commands
            .get(&id)
            .is_some_and(|c| c.run.is_some() || c.sup.is_live())
    }
}

/// Pids reaped lately, so a SIGCHLD read after the pidfd event still counts as ours.
pub const RECENTLY_REAPED: usize = 256;

/// How long a possibly merged orphan SIGCHLD may wait for its scan.
pub const ORPHAN_SCAN_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// A pipe whose read end is non-blocking (ours) and write end blocking (the child's).
fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| format!("pipe: {e}"))?;
    // A new pipe's read end has no status flags but O_RDONLY (which F_SETFL keeps),
    // so no F_GETFL round trip is needed.
    rustix::fs::fcntl_setfl(&r, rustix::fs::OFlags::NONBLOCK).map_err(|e| format!("fcntl: {e}"))?;
    Ok((r, w))
}

/// The card's user and group, resolved now (the child cannot read /etc/passwd).
fn resolve_creds(spec: &CommandSpec) -> Result<Option<(u32, u32, Vec<u32>)>, String> {
    if spec.user.is_none() && spec.group.is_none() {
        return Ok(None);
    }
    let user = match &spec.user {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .map_err(|e| format!("look up user {name}: {e}"))?
                .ok_or_else(|| format!("no such user {name}"))?,
        ),
        None => None,
    };
    let gid = match &spec.group {
        Some(name) => nix::unistd::Group::from_name(name)
            .map_err(|e| format!("look up group {name}: {e}"))?
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
pub(crate) fn leaf_name(id: u64, command: &str) -> String {
    format!("{id}-{command}")
}
