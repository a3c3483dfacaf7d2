//! Workspace and command specifications: what a card declares, after validation.
//!
//! Durations are kept in milliseconds and sizes in bytes so that the wire format and the
//! snapshot never carry units; the card loader turns "64M" and "100ms" into these.

use serde::{Deserialize, Serialize};

/// Longest workspace or command name, in bytes (`[a-z0-9][a-z0-9._-]{0,62}`).
pub const MAX_NAME_LEN: usize = 63;
/// Most commands (services plus tasks) one workspace may declare.
pub const MAX_COMMANDS_PER_WORKSPACE: usize = 256;

/// Is `name` a valid workspace or command name: `[a-z0-9][a-z0-9._-]{0,62}`?
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() => {}
        _ => return false,
    }
    bytes.len() <= MAX_NAME_LEN
        && bytes.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

/// A workspace: a named group of commands sharing one cgroup subtree and its limits.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkspaceSpec {
    pub name: String,
    pub limits: Limits,
    /// The workspace is stopped this long after it was created, if set.
    pub ttl_ms: Option<u64>,
    /// What to do when the kernel's OOM killer kills a command of this workspace.
    pub on_oom: OomAction,
    /// Services and tasks, in card order.
    pub commands: Vec<CommandSpec>,
    /// Pipelines, in card order (protocol 6 and snapshot 4 on).
    pub pipelines: Vec<crate::pipeline::PipelineSpec>,
}

/// cgroup v2 limits of a workspace. `None` leaves the kernel's default ("max").
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Limits {
    /// memory.max, bytes.
    pub memory_max: Option<u64>,
    /// memory.high, bytes.
    pub memory_high: Option<u64>,
    /// memory.swap.max, bytes.
    pub memory_swap_max: Option<u64>,
    /// pids.max, tasks.
    pub pids_max: Option<u64>,
    /// cpu.max: quota and period in microseconds.
    pub cpu_max: Option<CpuMax>,
    /// cpu.weight, 1..=10000.
    pub cpu_weight: Option<u16>,
    /// io.weight, 1..=10000.
    pub io_weight: Option<u16>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuMax {
    pub quota_us: u64,
    pub period_us: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OomAction {
    /// Treat the OOM kill as a failure and apply the command's restart policy.
    #[default]
    Restart,
    /// Stop the whole workspace.
    StopWorkspace,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommandKind {
    /// Runs once; never restarted.
    #[default]
    Task,
    /// Supervised and restarted according to its policy.
    Service,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    #[default]
    Never,
    OnFailure,
    Always,
}

/// Where a command's stdout and stderr go.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub enum LogTarget {
    /// Captured into bounded ring buffers, readable with `shuma logs`.
    #[default]
    Ring,
    /// Inherited from arje (the console, as PID 1).
    Console,
    /// Appended to a file.
    File(String),
}

/// One command of a workspace: a service or a task.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    pub name: String,
    pub kind: CommandKind,
    pub argv: Vec<String>,
    /// Environment as `KEY=VALUE` pairs, in card order. Nothing else is inherited.
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub log: LogTarget,
    pub restart: RestartPolicy,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Give up after this many restarts within `restart_window_ms` (0 = no limit).
    pub max_restarts: u32,
    pub restart_window_ms: u64,
    /// A run shorter than this counts as a failure to start, whatever its exit status.
    pub min_uptime_ms: u64,
    /// Signal number sent first on stop.
    pub stop_signal: i32,
    pub stop_grace_ms: u64,
    /// How arje learns that a service is ready (a task is ready when it exits 0).
    pub ready: Readiness,
    /// A service not ready this long after its start fails with its stderr's tail as
    /// the reason (0: wait for ever).
    pub ready_timeout_ms: u64,
    /// With `ready = notify`: the service must send `WATCHDOG=1` at least this often
    /// once ready, or it is killed (SIGABRT) and restarted by its policy. It is told the
    /// interval in `WATCHDOG_USEC`.
    pub watchdog_ms: Option<u64>,
    /// Start only once these are ready (or have failed), and stop before them.
    pub after: Vec<DepRef>,
    /// These must come up: if one fails or stops for good, this command is stopped
    /// (systemd's `Requires=`; ordering only with `after`).
    pub requires: Vec<DepRef>,
    /// Weak form of `requires`: recorded and shown, never propagates a failure.
    pub wants: Vec<DepRef>,
    /// Periodic check of a ready service; past `retries` failures in a row it is
    /// restarted by its policy.
    pub health: Option<HealthCheck>,
    /// Directories made before each start, owned by the command's user and group
    /// (systemd's `RuntimeDirectory=` and its siblings). Protocol 6 and snapshot 4 on,
    /// like the two after it.
    pub directories: Vec<ServiceDir>,
    /// Resource limits the program starts with (setrlimit(2)).
    pub rlimits: Vec<Rlimit>,
    /// What a stop signals: the whole run (its group, session or cgroup), or only its
    /// main process.
    pub kill_mode: KillMode,
}

/// A directory a command needs: `path` (relative) under the base its `kind` names.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ServiceDir {
    pub kind: DirKind,
    pub path: String,
    /// Permission bits, e.g. 0o755.
    pub mode: u32,
}

/// The bases of [`ServiceDir`], as systemd's directory settings name them.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirKind {
    /// `/run`
    Runtime,
    /// `/var/lib`
    State,
    /// `/var/cache`
    Cache,
    /// `/var/log`
    Logs,
    /// `/etc`
    Configuration,
}

impl DirKind {
    /// Every kind, with its card key's stem and its base directory.
    pub const ALL: [(DirKind, &'static str, &'static str); 5] = [
        (DirKind::Runtime, "runtime", "/run"),
        (DirKind::State, "state", "/var/lib"),
        (DirKind::Cache, "cache", "/var/cache"),
        (DirKind::Logs, "logs", "/var/log"),
        (DirKind::Configuration, "configuration", "/etc"),
    ];

    /// The base directory, e.g. `/run`.
    pub fn base(self) -> &'static str {
        DirKind::ALL
            .iter()
            .find(|(k, ..)| *k == self)
            .map_or("/run", |(_, _, base)| base)
    }
}

/// One resource limit: the resource as setrlimit(2) names it without `RLIMIT_`, in
/// lower case (`nofile`, `nproc`, `core`...); `None` is unlimited.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: String,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// The resources a card may limit, by name.
pub const RLIMIT_NAMES: [&str; 16] = [
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// What a stop signals (systemd's `KillMode=`).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KillMode {
    /// Every process of the run: its process group and session, or its leaf cgroup.
    #[default]
    ControlGroup,
    /// Only the main process; the others it started keep running (an ssh session
    /// outlives a restart of sshd).
    Process,
}

/// A dependency: a command of the same workspace, or `workspace/name` of another.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DepRef {
    /// `None`: the workspace of the command that names it.
    pub workspace: Option<String>,
    pub name: String,
}

impl DepRef {
    /// Parse `name` or `workspace/name`; `None` if either part is not a valid name.
    pub fn parse(s: &str) -> Option<DepRef> {
        let (workspace, name) = match s.split_once('/') {
            Some((w, n)) => (Some(w), n),
            None => (None, s),
        };
        if !valid_name(name) || workspace.is_some_and(|w| !valid_name(w)) {
            return None;
        }
        Some(DepRef {
            workspace: workspace.map(str::to_string),
            name: name.to_string(),
        })
    }
}

impl core::fmt::Display for DepRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.workspace {
            Some(w) => write!(f, "{w}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// When a service counts as ready.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub enum Readiness {
    /// As soon as it is spawned (the default).
    #[default]
    Started,
    /// systemd's sd_notify protocol: `READY=1` on the datagram socket in `NOTIFY_SOCKET`.
    Notify,
    /// s6's notification fd: a newline written to this fd (3 or above).
    Fd(u32),
    /// A line of its stdout or stderr containing this text.
    Line(String),
    /// A probe that succeeds, retried until it does.
    Probe(Probe),
}

/// A check arje runs from outside the service.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A program (run with the service's user, group, environment and directory) that
    /// exits 0.
    Exec(Vec<String>),
    /// A TCP connection to `host:port` that is accepted.
    Tcp(String),
    /// A connection to this unix stream socket that is accepted.
    Unix(String),
}

/// A health check run after the service is ready.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub probe: Probe,
    pub interval_ms: u64,
    /// One probe that takes longer fails.
    pub timeout_ms: u64,
    /// Failures in a row that make the service unhealthy.
    pub retries: u32,
}

/// Defaults of a `[service.health]` table's optional keys.
pub const HEALTH_INTERVAL_MS: u64 = 30_000;
pub const HEALTH_TIMEOUT_MS: u64 = 5_000;
pub const HEALTH_RETRIES: u32 = 3;
/// Default `ready_timeout`: systemd's `DefaultTimeoutStartSec`.
pub const READY_TIMEOUT_MS: u64 = 90_000;

impl CommandSpec {
    /// The defaults every card field falls back to.
    pub fn new(name: impl Into<String>, kind: CommandKind, argv: Vec<String>) -> Self {
        CommandSpec {
            name: name.into(),
            kind,
            argv,
            env: Vec::new(),
            cwd: None,
            user: None,
            group: None,
            log: LogTarget::Ring,
            restart: match kind {
                CommandKind::Task => RestartPolicy::Never,
                CommandKind::Service => RestartPolicy::OnFailure,
            },
            backoff_initial_ms: 100,
            backoff_max_ms: 30_000,
            max_restarts: 10,
            restart_window_ms: 60_000,
            min_uptime_ms: 1_000,
            stop_signal: 15,
            stop_grace_ms: 5_000,
            ready: Readiness::Started,
            ready_timeout_ms: READY_TIMEOUT_MS,
            watchdog_ms: None,
            after: Vec::new(),
            requires: Vec::new(),
            wants: Vec::new(),
            health: None,
            directories: Vec::new(),
            rlimits: Vec::new(),
            kill_mode: KillMode::ControlGroup,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_valid_name_accepts_and_rejects() {
        assert!(valid_name("demo"));
        assert!(valid_name("a.b_c-1"));
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        assert!(!valid_name("Demo"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"a".repeat(64)));
        assert!(valid_name(&"a".repeat(63)));
    }
}
