//! Readiness: when a started service counts as up, and what happens when it never does.
//!
//! Each run starts not ready. The card's `ready` says what makes it ready: its start
//! (`started`), `READY=1` on its notify socket (`notify.rs`), a line of its output, a
//! newline on its s6 notification fd, or a probe (`probes.rs`). A task is ready when it
//! exits 0. Becoming ready is journalled (`CommandReady`), starts its watchdog and health
//! check, and lets what is ordered after it start (`deps.rs`). Not becoming ready in
//! `ready_timeout`, or exiting first, is journalled with the tail of its stderr
//! (`CommandNotReady`): that is what the person reading it needs to see.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use shuma_card::{CommandKind, EventKind, Readiness};

use super::notify::{self, NotifySocket, Sender};
use super::Runtime;
use crate::ids::CommandId;
use crate::supervise::{Event, State};
use crate::timers::TimerAction;
use crate::token::Token;

/// Lines of stderr quoted when a service is not ready.
const TAIL_LINES: usize = 5;
/// Bytes of stderr looked at for those lines.
const TAIL_BYTES: u64 = 2048;
/// Longest partial output line kept while looking for a `ready = { line }` pattern.
const MAX_PARTIAL_LINE: usize = 4096;

/// One command's readiness, across its runs.
#[derive(Default)]
pub struct ReadyState {
    /// The current run's `ready` condition held (a task: it exited 0).
    pub ready: bool,
    /// The last `STATUS=` text.
    pub status: Option<String>,
    /// Made at the command's first start with `ready = notify`, kept for its life.
    pub notify: Option<NotifySocket>,
    /// The current run must be ready by then.
    pub deadline: Option<Instant>,
    /// The watchdog interval in force (`watchdog`, or a `WATCHDOG_USEC=` the service sent).
    pub watchdog: Option<Duration>,
    /// The next `WATCHDOG=1` is due by then.
    pub watchdog_due: Option<Instant>,
    /// Why the latest start did not become ready; cleared by the next start.
    pub not_ready: Option<String>,
    /// The uid the command runs as (arje's own without `user`): who may notify.
    pub uid: u32,
    /// The earliest `TimerAction::Ready` pending for this command: one timer at a time,
    /// however often a service sends `WATCHDOG=1` or `EXTEND_TIMEOUT_USEC=`.
    armed: Option<Instant>,
    /// The read end of the current run's s6 notification fd (`ready = { fd = N }`).
    pub fd: Option<std::os::fd::OwnedFd>,
    /// Partial stdout and stderr lines, while a `line` pattern is awaited.
    partial: [Vec<u8>; 2],
}

impl Runtime {
    /// The environment a run gets besides its card's: `NOTIFY_SOCKET` (the socket made
    /// now if this is the first start) and `WATCHDOG_USEC`.
    pub(crate) fn ready_env(
        &mut self,
        id: CommandId,
    ) -> Result<Vec<(String, String)>, super::commands::StartError> {
        use super::commands::StartError;
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return Ok(Vec::new());
        };
        if cmd.spec.ready != Readiness::Notify {
            return Ok(Vec::new());
        }
        if cmd.ready.notify.is_none() {
            // Out of fds or memory is transient, as for the other fds of a spawn.
            let sock = NotifySocket::new().map_err(|e| StartError::os("notify socket", &e))?;
            self.reactor
                .add(
                    sock.fd.as_fd(),
                    Token::Notify(id),
                    super::reactor::Interest::Read,
                )
                .map_err(|e| StartError::os("epoll_ctl for the notify socket", &e))?;
            cmd.ready.notify = Some(sock);
        }
        let mut env = Vec::new();
        if let Some(sock) = &cmd.ready.notify {
            env.push(("NOTIFY_SOCKET".to_string(), sock.address.clone()));
        }
        if let Some(ms) = cmd.spec.watchdog_ms {
            env.push(("WATCHDOG_USEC".to_string(), (ms * 1000).to_string()));
        }
        Ok(env)
    }

    /// A run was spawned: it is not ready until its condition holds.
    pub(crate) fn ready_on_spawn(&mut self, id: CommandId, now: Instant) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        let r = &mut cmd.ready;
        r.ready = false;
        r.not_ready = None;
        r.watchdog = cmd.spec.watchdog_ms.map(Duration::from_millis);
        r.watchdog_due = None;
        r.partial = Default::default();
        r.deadline = None;
        if cmd.spec.kind == CommandKind::Task {
            return;
        }
        if cmd.spec.ready == Readiness::Started {
            self.mark_ready(id, now);
            return;
        }
        if cmd.spec.ready_timeout_ms > 0 {
            let at = now + Duration::from_millis(cmd.spec.ready_timeout_ms);
            cmd.ready.deadline = Some(at);
            arm(&mut cmd.ready, &mut self.timers, id, at);
        }
        if let Readiness::Probe(_) = &cmd.spec.ready {
            self.probe_soon(id, now);
        }
    }

    /// An adopted run (a re-exec, a crash restart): its readiness deadline, probes,
    /// watchdog and health checks start again from now.
    pub(crate) fn ready_resume(&mut self, id: CommandId, now: Instant) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        if cmd.spec.kind == CommandKind::Task {
            return;
        }
        cmd.ready.watchdog = cmd.spec.watchdog_ms.map(Duration::from_millis);
        if cmd.ready.notify.is_none() && cmd.ready.watchdog.is_some() {
            // After a crash restart the notify socket died with the old process: the
            // service's pings go nowhere, and a watchdog would kill a healthy service.
            log::warn!(
                "{}/{}: watchdog off for this run: its notify socket did not survive",
                cmd.workspace,
                cmd.spec.name
            );
            cmd.ready.watchdog = None;
        }
        if cmd.ready.ready {
            if let Some(every) = cmd.ready.watchdog {
                cmd.ready.watchdog_due = Some(now + every);
                arm(&mut cmd.ready, &mut self.timers, id, now + every);
            }
            if cmd.spec.health.is_some() {
                self.health_start(id, now);
            }
            return;
        }
        match &cmd.spec.ready {
            Readiness::Started => self.mark_ready(id, now),
            ready => {
                let probe = matches!(ready, Readiness::Probe(_));
                if cmd.spec.ready_timeout_ms > 0 {
                    let at = now + Duration::from_millis(cmd.spec.ready_timeout_ms);
                    cmd.ready.deadline = Some(at);
                    arm(&mut cmd.ready, &mut self.timers, id, at);
                }
                if probe {
                    self.probe_soon(id, now);
                }
            }
        }
    }

    /// The current run is ready.
    pub(crate) fn mark_ready(&mut self, id: CommandId, now: Instant) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        if cmd.ready.ready || !matches!(cmd.sup.state, State::Running { .. }) {
            return;
        }
        cmd.ready.ready = true;
        cmd.ready.deadline = None;
        if let Some(every) = cmd.ready.watchdog {
            let due = now + every;
            cmd.ready.watchdog_due = Some(due);
            arm(&mut cmd.ready, &mut self.timers, id, due);
        }
        let after_ms = cmd.run.as_ref().map_or(0, |r| {
            now.saturating_duration_since(r.started).as_millis() as u64
        });
        let (workspace, command) = (cmd.workspace.clone(), cmd.spec.name.clone());
        let health = cmd.spec.health.is_some();
        self.store.mark_dirty();
        self.event(EventKind::CommandReady {
            workspace,
            command,
            after_ms,
        });
        if health {
            self.health_start(id, now);
        }
        self.deps_progress(now);
        self.waiters_progress();
    }

    /// A task ended: exit 0 is its readiness. Called before the supervisor hears of
    /// the exit, so what is after it starts in the same turn.
    pub(crate) fn ready_on_exit(&mut self, id: CommandId, status: shuma_card::ExitStatus) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        let was_ready = std::mem::take(&mut cmd.ready.ready);
        cmd.ready.deadline = None;
        cmd.ready.watchdog_due = None;
        if let Some(fd) = cmd.ready.fd.take() {
            self.reactor.remove(fd.as_fd());
        }
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        if cmd.spec.kind == CommandKind::Task {
            if status.success() {
                cmd.ready.ready = true;
            } else {
                cmd.ready.not_ready = Some(format!("exited: {status}"));
            }
            return;
        }
        // A service stopped on purpose, or one that was ready, is not "not ready".
        let stopping = matches!(cmd.sup.state, State::Stopping { .. });
        if was_ready || stopping {
            return;
        }
        let why = format!("exited before it was ready: {status}{}", stderr_tail(cmd));
        cmd.ready.not_ready = Some(why.clone());
        let (workspace, command) = (cmd.workspace.clone(), cmd.spec.name.clone());
        self.event(EventKind::CommandNotReady {
            workspace,
            command,
            reason: why,
        });
    }

    /// A readiness deadline may be due: not ready in time, or a watchdog ping missed.
    pub(crate) fn on_ready_timer(&mut self, id: CommandId, now: Instant) {
        // What the service wrote up to now belongs in the verdict's stderr tail.
        let pipes = self
            .table
            .commands
            .get(&id)
            .map(|c| c.pipe_ids.clone())
            .unwrap_or_default();
        for p in pipes {
            self.on_log(p);
        }
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        // The one timer of this command fired: what is still ahead is armed again.
        cmd.ready.armed = None;
        for at in [cmd.ready.deadline, cmd.ready.watchdog_due]
            .into_iter()
            .flatten()
            .filter(|at| *at > now)
        {
            arm(&mut cmd.ready, &mut self.timers, id, at);
        }
        if !matches!(cmd.sup.state, State::Running { .. }) {
            return;
        }
        if cmd.ready.deadline.is_some_and(|d| d <= now) && !cmd.ready.ready {
            cmd.ready.deadline = None;
            let why = format!(
                "not ready within {}{}",
                human_ms(cmd.spec.ready_timeout_ms),
                stderr_tail(cmd)
            );
            cmd.ready.not_ready = Some(why.clone());
            let (workspace, command) = (cmd.workspace.clone(), cmd.spec.name.clone());
            let signal = cmd.spec.stop_signal;
            self.event(EventKind::CommandNotReady {
                workspace,
                command,
                reason: why.clone(),
            });
            self.waiters_progress();
            self.command_event(
                id,
                Event::Fail {
                    reason: why,
                    signal,
                    restart: true,
                },
                now,
            );
            return;
        }
        if cmd.ready.watchdog_due.is_some_and(|d| d <= now) && cmd.ready.ready {
            cmd.ready.watchdog_due = None;
            let every = cmd.ready.watchdog.unwrap_or_default();
            let why = format!(
                "watchdog: no WATCHDOG=1 within {}",
                human_ms(every.as_millis() as u64)
            );
            self.unhealthy(id, why, libc::SIGABRT, now);
        }
    }

    /// The service failed a check while running: journal why, stop it with `signal`
    /// and let its restart policy decide.
    pub(crate) fn unhealthy(&mut self, id: CommandId, why: String, signal: i32, now: Instant) {
        let Some(cmd) = self.table.commands.get(&id) else {
            return;
        };
        let (workspace, command) = (cmd.workspace.clone(), cmd.spec.name.clone());
        self.event(EventKind::CommandUnhealthy {
            workspace,
            command,
            reason: why.clone(),
        });
        self.command_event(
            id,
            Event::Fail {
                reason: why,
                signal,
                restart: true,
            },
            now,
        );
    }

    /// The command's notify socket is readable.
    pub(crate) fn on_notify(&mut self, id: CommandId) {
        self.read_notify(id, false);
    }

    /// What a run that has just been reaped sent before it died: only `MAINPID=` (a
    /// forking parent naming its successor) and `STATUS=` are applied. Anything that
    /// would signal the run (`WATCHDOG=trigger`) must not: its pid is free again.
    pub(crate) fn on_notify_final(&mut self, id: CommandId) {
        self.read_notify(id, true);
    }

    fn read_notify(&mut self, id: CommandId, reaped: bool) {
        let Some(sock) = self
            .table
            .commands
            .get(&id)
            .and_then(|c| c.ready.notify.as_ref())
        else {
            return;
        };
        let now = Instant::now();
        for (sender, data) in sock.drain() {
            if let Err(why) = self.may_notify(id, sender) {
                log::warn!("notify message for command {id} ignored: {why}");
                continue;
            }
            let mut m = notify::parse(&data);
            if reaped {
                m = notify::Message {
                    main_pid: m.main_pid,
                    status: m.status,
                    ..Default::default()
                };
            }
            self.apply_notify(id, sender, m, now);
        }
    }

    /// Only the service's own processes may speak for it: the sender must run as the
    /// service's uid (or root), and, while it still exists, be in the run's leaf
    /// cgroup. A sender that has already exited (`systemd-notify` often has by the time
    /// the datagram is read) is judged by its uid alone, which the kernel recorded.
    fn may_notify(&self, id: CommandId, sender: Sender) -> Result<(), String> {
        let cmd = self.table.commands.get(&id).ok_or("no such command")?;
        let run = cmd.run.as_ref().ok_or("the command is not running")?;
        if sender.uid != cmd.ready.uid && sender.uid != 0 {
            return Err(format!(
                "sent by uid {}, the command runs as uid {}",
                sender.uid, cmd.ready.uid
            ));
        }
        if sender.pid == run.pid {
            return Ok(());
        }
        if let Some(leaf) = &run.leaf {
            let alive = super::sessions::stat(sender.pid).is_some();
            let inside = leaf.procs().is_ok_and(|p| p.contains(&sender.pid));
            if alive && !inside {
                return Err(format!(
                    "sent by pid {}, which is not in the command's cgroup",
                    sender.pid
                ));
            }
        }
        Ok(())
    }

    fn apply_notify(&mut self, id: CommandId, sender: Sender, m: notify::Message, now: Instant) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        if let Some(status) = m.status {
            cmd.ready.status = Some(status);
            self.store.mark_dirty();
        }
        if let Some(errno) = m.errno {
            let text = std::io::Error::from_raw_os_error(errno);
            cmd.ready.status = Some(notify::clip(
                &format!("errno {errno}: {text}"),
                notify::MAX_STATUS,
            ));
        }
        if let Some(usec) = m.watchdog_usec {
            cmd.ready.watchdog = Some(capped_micros(usec));
        }
        if let Some(usec) = m.extend_timeout_usec {
            if let Some(d) = cmd.ready.deadline {
                let at = d.max(now + capped_micros(usec));
                cmd.ready.deadline = Some(at);
                arm(&mut cmd.ready, &mut self.timers, id, at);
            }
        }
        if m.reloading {
            // Not ready again until the next READY=1, like systemd's "reloading".
            cmd.ready.ready = false;
        }
        if let Some(pid) = m.main_pid {
            self.adopt_main_pid(id, sender, pid);
        }
        if m.watchdog {
            self.watchdog_ping(id, now);
        }
        if m.ready {
            self.mark_ready(id, now);
        }
        if m.watchdog_trigger {
            let why = "watchdog: the service triggered it (WATCHDOG=trigger)".to_string();
            self.unhealthy(id, why, libc::SIGABRT, now);
        }
    }

    /// `MAINPID=`: a daemon that forked names the process to supervise from now on. It
    /// must be alive, never init, arje itself or a process arje already holds for
    /// something else (another command's run, a probe, a straggler), and the service's
    /// own: in the run's leaf cgroup, whoever sent it; without cgroups, owned by the
    /// service's uid unless root sent it. A stop signals the new main process's group
    /// and, through its pidfd, the process itself.
    fn adopt_main_pid(&mut self, id: CommandId, sender: Sender, pid: i32) {
        if pid <= 1 || pid == std::process::id() as i32 || self.procs.holds(pid) {
            log::warn!("MAINPID={pid} for command {id} ignored: not a process it may name");
            return;
        }
        let Some(run) = self.table.commands.get(&id).and_then(|c| c.run.as_ref()) else {
            return;
        };
        if run.pid == pid {
            return;
        }
        let uid = self.table.commands.get(&id).map_or(0, |c| c.ready.uid);
        let Some(stat) = super::sessions::stat(pid).filter(|s| !s.is_zombie()) else {
            log::warn!("MAINPID={pid} for command {id} ignored: no such process");
            return;
        };
        let owned = match &run.leaf {
            Some(leaf) => leaf.procs().is_ok_and(|p| p.contains(&pid)),
            None => proc_uid(pid) == Some(uid) || sender.uid == 0,
        };
        if !owned {
            log::warn!("MAINPID={pid} for command {id} ignored: not the service's process");
            return;
        }
        let Some(raw) = rustix::process::Pid::from_raw(pid) else {
            return;
        };
        let pidfd = match rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                log::warn!("MAINPID={pid} for command {id} ignored: pidfd_open: {e}");
                return;
            }
        };
        if let Err(e) = self.reactor.add(
            pidfd.as_fd(),
            Token::Child(id),
            super::reactor::Interest::Read,
        ) {
            log::warn!("MAINPID={pid} for command {id} ignored: epoll_ctl: {e}");
            return;
        }
        let Some(run) = self
            .table
            .commands
            .get_mut(&id)
            .and_then(|c| c.run.as_mut())
        else {
            return;
        };
        // The old main process is no longer the command: its exit (the forking parent's,
        // usually at once) is reaped as an orphan's. Dropping its pidfd takes it out of
        // epoll.
        let old = std::mem::replace(&mut run.pid, pid);
        run.pidfd = pidfd;
        run.start_time_ticks = stat.start_ticks;
        self.procs.forget(old);
        self.procs.track(pid, id);
        self.store.mark_dirty();
        log::info!("command {id}: main pid {old} -> {pid} (MAINPID)");
    }

    fn watchdog_ping(&mut self, id: CommandId, now: Instant) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        if let (true, Some(every)) = (cmd.ready.ready, cmd.ready.watchdog) {
            let due = now + every;
            cmd.ready.watchdog_due = Some(due);
            arm(&mut cmd.ready, &mut self.timers, id, due);
        }
    }

    /// A run with `ready = { fd = N }` got the write end of this pipe as fd N: watch
    /// the read end (the previous run's, if any, is dropped).
    pub(crate) fn ready_fd_open(&mut self, id: CommandId, read: std::os::fd::OwnedFd) {
        if let Err(e) = self.reactor.add(
            read.as_fd(),
            Token::ReadyFd(id),
            super::reactor::Interest::Read,
        ) {
            log::warn!("notification fd of command {id}: epoll_ctl: {e}");
            return;
        }
        if let Some(cmd) = self.table.commands.get_mut(&id) {
            cmd.ready.fd = Some(read);
        }
    }

    /// The notification fd is readable: a newline means ready; end of file (the
    /// service closed it) ends the watch.
    pub(crate) fn on_ready_fd(&mut self, id: CommandId) {
        let Some(fd) = self
            .table
            .commands
            .get(&id)
            .and_then(|c| c.ready.fd.as_ref())
        else {
            return;
        };
        let mut buf = [0u8; 512];
        let (newline, done) = match rustix::io::read(fd, &mut buf) {
            Ok(0) => (false, true),
            Ok(n) => (buf[..n].contains(&b'\n'), false),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => (false, false),
            Err(_) => (false, true),
        };
        if newline || done {
            if let Some(fd) = self
                .table
                .commands
                .get_mut(&id)
                .and_then(|c| c.ready.fd.take())
            {
                self.reactor.remove(fd.as_fd());
            }
        }
        if newline {
            self.mark_ready(id, Instant::now());
        }
    }

    /// Lines of a `ready = { line }` command's output: ready at the first line that
    /// holds the pattern.
    pub(crate) fn ready_check_output(&mut self, id: CommandId, is_err: bool, data: &[u8]) {
        let Some(cmd) = self.table.commands.get_mut(&id) else {
            return;
        };
        let Readiness::Line(pattern) = &cmd.spec.ready else {
            return;
        };
        if cmd.ready.ready {
            return;
        }
        let partial = &mut cmd.ready.partial[usize::from(is_err)];
        let mut found = false;
        for chunk in data.split_inclusive(|b| *b == b'\n') {
            partial.extend_from_slice(chunk);
            if contains(partial, pattern.as_bytes()) {
                found = true;
                break;
            }
            if chunk.ends_with(b"\n") {
                partial.clear();
            } else if partial.len() > MAX_PARTIAL_LINE {
                // Keep the end: the pattern may straddle the cut.
                let cut = partial.len() - pattern.len().min(MAX_PARTIAL_LINE);
                partial.drain(..cut);
            }
        }
        if found {
            cmd.ready.partial = Default::default();
            self.mark_ready(id, Instant::now());
        }
    }
}

/// Add the command's readiness timer for `at`, unless one already fires no later.
fn arm(r: &mut ReadyState, timers: &mut crate::timers::Timers, id: CommandId, at: Instant) {
    if r.armed.is_some_and(|armed| armed <= at) {
        return;
    }
    r.armed = Some(at);
    timers.add(at, TimerAction::Ready(id));
}

/// The longest interval a service may ask for (`WATCHDOG_USEC=`,
/// `EXTEND_TIMEOUT_USEC=`): a day. Larger values would overflow an `Instant`.
const MAX_ASKED: Duration = Duration::from_secs(24 * 3600);

fn capped_micros(usec: u64) -> Duration {
    Duration::from_micros(usec).min(MAX_ASKED)
}

/// The uid that owns `/proc/PID` (the process's effective uid).
fn proc_uid(pid: i32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// The command's last stderr lines, each on a line of its own after `; stderr:`, or
/// nothing if it wrote none. (The CLI indents the continuation lines.)
pub(crate) fn stderr_tail(cmd: &super::commands::Command) -> String {
    let from = cmd.err.written().saturating_sub(TAIL_BYTES);
    let (data, _) = cmd.err.read_from(from);
    let text = String::from_utf8_lossy(&data);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return match &cmd.spec.log {
            shuma_card::LogTarget::Ring => String::new(),
            _ => "; its stderr is not captured (log is not the ring)".into(),
        };
    }
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    format!("; stderr:\n{}", tail.join("\n"))
}

/// `1500` → `1.5s`, `30000` → `30s`, `250` → `250ms`.
pub(crate) fn human_ms(ms: u64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms}ms"),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{}.{}s", ms / 1000, (ms % 1000) / 100),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_human_ms_whole_fraction_and_small() {
        assert_eq!(human_ms(30_000), "30s");
        assert_eq!(human_ms(1_500), "1.5s");
        assert_eq!(human_ms(250), "250ms");
    }

    #[test]
    fn test_contains_finds_a_pattern_anywhere() {
        assert!(contains(b"server READY on :80\n", b"READY"));
        assert!(!contains(b"READ", b"READY"));
    }
}
