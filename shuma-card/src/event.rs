//! Records of the event journal: lifecycle events with increasing ids.

use serde::{Deserialize, Serialize};

/// How a command ended.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited normally with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Killed by the kernel's OOM killer at the workspace's memory.max (SIGKILL).
    OomKilled,
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The shell's convention: the code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
            ExitStatus::OomKilled => 128 + 9,
        }
    }
}

impl core::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
            ExitStatus::OomKilled => write!(f, "killed by the kernel's OOM killer at memory.max"),
        }
    }
}

/// One journal record.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Strictly increasing, never reused (survives restarts through the snapshot).
    pub id: u64,
    /// CLOCK_MONOTONIC in microseconds: for intervals (e.g. restart backoff).
    pub mono_us: u64,
    /// Wall clock, milliseconds since the Unix epoch: for display.
    pub unix_ms: u64,
    pub kind: EventKind,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    WorkspaceCreated {
        workspace: String,
    },
    WorkspaceStopped {
        workspace: String,
    },
    CommandStarted {
        workspace: String,
        command: String,
        pid: i32,
    },
    CommandExited {
        workspace: String,
        command: String,
        pid: i32,
        status: ExitStatus,
    },
    /// A service will be started again after `delay_ms`; `restarts` counts this one.
    CommandRestarting {
        workspace: String,
        command: String,
        delay_ms: u64,
        restarts: u32,
    },
    /// A service gave up: no more restarts.
    CommandFailed {
        workspace: String,
        command: String,
        reason: String,
    },
    /// The start itself failed (exec error, missing user, ...).
    SpawnFailed {
        workspace: String,
        command: String,
        error: String,
    },
    /// memory.events `oom_kill` rose: the kernel killed a task of this workspace.
    OomKill {
        workspace: String,
        command: Option<String>,
        count: u64,
    },
    /// memory.events `max` or `high` rose: the workspace hit memory.max / memory.high.
    MemoryLimit {
        workspace: String,
        which: String,
        count: u64,
    },
    /// pids.events `max` rose: a fork failed at pids.max.
    PidsMax {
        workspace: String,
        count: u64,
    },
    /// A limit was changed while running.
    LimitChanged {
        workspace: String,
        key: String,
        value: String,
    },
    /// Something the operator should see (a limit not enforced, a snapshot set aside...).
    Warning {
        message: String,
    },
    /// A service became ready (its `ready` condition held), `after_ms` after its start;
    /// a task counts as ready when it exits 0. (Protocol version 4.)
    CommandReady {
        workspace: String,
        command: String,
        after_ms: u64,
    },
    /// A service was not ready within its `ready_timeout`, or exited before it was;
    /// `reason` ends with the last lines of its stderr.
    CommandNotReady {
        workspace: String,
        command: String,
        reason: String,
    },
    /// A ready service failed its health check `retries` times in a row, or missed its
    /// watchdog; it is restarted by its policy.
    CommandUnhealthy {
        workspace: String,
        command: String,
        reason: String,
    },
    /// A message written to `/dev/log` (syslog(3), `logger`): its facility and severity
    /// (RFC 3164 numbers), the program's tag and pid as it gave them, and the text.
    Syslog {
        facility: u8,
        severity: u8,
        program: String,
        pid: Option<i32>,
        message: String,
    },
    /// A pipeline's nodes were all started (protocol 6 on).
    PipelineStarted {
        workspace: String,
        pipeline: String,
    },
    /// Every node ended and `node` failed: the whole pipeline starts again after
    /// `delay_ms`.
    PipelineRestarting {
        workspace: String,
        pipeline: String,
        node: String,
        delay_ms: u64,
        restarts: u32,
    },
    /// The pipeline's restarts ran out: `node` failed, `reason` says how (with its
    /// stderr tail).
    PipelineFailed {
        workspace: String,
        pipeline: String,
        node: String,
        reason: String,
    },
    /// Every node exited 0 (or the pipeline was stopped): it is done.
    PipelineFinished {
        workspace: String,
        pipeline: String,
    },
    /// A fan-out reader fell behind: `bytes` of `edge` were dropped (one event per
    /// burst).
    PipelineDropped {
        workspace: String,
        pipeline: String,
        edge: String,
        bytes: u64,
    },
}

impl EventKind {
    /// The workspace the event is about, if it is about one (a Warning or a syslog
    /// message is not).
    pub fn workspace(&self) -> Option<&str> {
        use EventKind::*;
        match self {
            WorkspaceCreated { workspace }
            | WorkspaceStopped { workspace }
            | CommandStarted { workspace, .. }
            | CommandExited { workspace, .. }
            | CommandRestarting { workspace, .. }
            | CommandFailed { workspace, .. }
            | SpawnFailed { workspace, .. }
            | OomKill { workspace, .. }
            | MemoryLimit { workspace, .. }
            | PidsMax { workspace, .. }
            | LimitChanged { workspace, .. }
            | CommandReady { workspace, .. }
            | CommandNotReady { workspace, .. }
            | CommandUnhealthy { workspace, .. }
            | PipelineStarted { workspace, .. }
            | PipelineRestarting { workspace, .. }
            | PipelineFailed { workspace, .. }
            | PipelineFinished { workspace, .. }
            | PipelineDropped { workspace, .. } => Some(workspace),
            Warning { .. } | Syslog { .. } => None,
        }
    }
}

impl core::fmt::Display for EventKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use EventKind::*;
        match self {
            WorkspaceCreated { workspace } => write!(f, "workspace {workspace} created"),
            WorkspaceStopped { workspace } => write!(f, "workspace {workspace} stopped"),
            CommandStarted {
                workspace,
                command,
                pid,
            } => {
                write!(f, "{workspace}/{command} started pid {pid}")
            }
            CommandExited {
                workspace,
                command,
                pid,
                status,
            } => {
                write!(f, "{workspace}/{command} pid {pid} exited: {status}")
            }
            CommandRestarting {
                workspace,
                command,
                delay_ms,
                restarts,
            } => {
                write!(
                    f,
                    "{workspace}/{command} restarting in {delay_ms}ms (restart {restarts})"
                )
            }
            CommandFailed {
                workspace,
                command,
                reason,
            } => {
                write!(f, "{workspace}/{command} failed: {reason}")
            }
            SpawnFailed {
                workspace,
                command,
                error,
            } => {
                write!(f, "{workspace}/{command} could not start: {error}")
            }
            OomKill {
                workspace,
                command,
                count,
            } => match command {
                Some(c) => write!(
                    f,
                    "{workspace}/{c} OOM: killed by the kernel at memory.max (oom_kill {count})"
                ),
                None => write!(
                    f,
                    "{workspace} OOM: killed by the kernel at memory.max (oom_kill {count})"
                ),
            },
            MemoryLimit {
                workspace,
                which,
                count,
            } => {
                write!(f, "{workspace} hit {which} ({count} times)")
            }
            PidsMax { workspace, count } => {
                write!(f, "{workspace} hit pids.max ({count} forks refused)")
            }
            LimitChanged {
                workspace,
                key,
                value,
            } => write!(f, "{workspace} {key} set to {value}"),
            Warning { message } => write!(f, "warning: {message}"),
            CommandReady {
                workspace,
                command,
                after_ms,
            } => write!(f, "{workspace}/{command} ready after {after_ms}ms"),
            CommandNotReady {
                workspace,
                command,
                reason,
            } => write!(f, "{workspace}/{command} not ready: {reason}"),
            CommandUnhealthy {
                workspace,
                command,
                reason,
            } => write!(f, "{workspace}/{command} unhealthy: {reason}"),
            Syslog {
                facility,
                severity,
                program,
                pid,
                message,
            } => {
                const FACILITIES: [&str; 24] = [
                    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp",
                    "cron", "authpriv", "ftp", "ntp", "audit", "alert", "clock", "local0",
                    "local1", "local2", "local3", "local4", "local5", "local6", "local7",
                ];
                const SEVERITIES: [&str; 8] = [
                    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
                ];
                let fac = FACILITIES.get(usize::from(*facility)).unwrap_or(&"?");
                let sev = SEVERITIES.get(usize::from(*severity)).unwrap_or(&"?");
                write!(f, "syslog {fac}.{sev} ")?;
                match (program.is_empty(), pid) {
                    (true, _) => {}
                    (false, Some(pid)) => write!(f, "{program}[{pid}]: ")?,
                    (false, None) => write!(f, "{program}: ")?,
                }
                f.write_str(message)
            }
            PipelineStarted {
                workspace,
                pipeline,
            } => write!(f, "pipeline {workspace}/{pipeline} started"),
            PipelineRestarting {
                workspace,
                pipeline,
                node,
                delay_ms,
                restarts,
            } => write!(
                f,
                "pipeline {workspace}/{pipeline}: node {node} failed; restart {restarts} in {delay_ms} ms"
            ),
            PipelineFailed {
                workspace,
                pipeline,
                node,
                reason,
            } => write!(f, "pipeline {workspace}/{pipeline} failed: node {node}: {reason}"),
            PipelineFinished {
                workspace,
                pipeline,
            } => write!(f, "pipeline {workspace}/{pipeline} finished"),
            PipelineDropped {
                workspace,
                pipeline,
                edge,
                bytes,
            } => write!(
                f,
                "pipeline {workspace}/{pipeline}: {bytes} bytes dropped on {edge} (its reader is behind)"
            ),
        }
    }
}
