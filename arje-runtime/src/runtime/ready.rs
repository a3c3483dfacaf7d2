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

use super::notify::NotifySocket;
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
pub(super) fn arm(
    r: &mut ReadyState,
    timers: &mut crate::timers::Timers,
    id: CommandId,
    at: Instant,
) {
    if r.armed.is_some_and(|armed| armed <= at) {
        return;
    }
    r.armed = Some(at);
    timers.add(at, TimerAction::Ready(id));
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
