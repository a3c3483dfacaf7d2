//! The snapshot's own copies of the card, event and protocol types it stores.
//!
//! postcard writes a struct as its fields in declaration order, without names or tags, so
//! the bytes of a snapshot are exactly the declarations of the types inside it. Format
//! version 1 embedded [`WorkspaceSpec`], [`StatsSample`] and [`ExitStatus`] themselves: a
//! field added to a card for a new feature silently changed what every snapshot file
//! meant. The types here belong to the snapshot instead. The card, the protocol and the
//! event journal may change freely; the snapshot format changes only when this file
//! does, and a change here is a new format version (`docs/STATE.md`).
//!
//! Every conversion destructures its source exhaustively and builds its target with a
//! struct literal or an exhaustive `match`, so a field or variant added on either side
//! stops the build here rather than being dropped on the way to disk or back.

use serde::{Deserialize, Serialize};

use super::saved_exec::{SavedKillMode, SavedRlimit, SavedServiceDir};
use super::saved_pipeline::SavedPipelineSpec;

use crate::event::ExitStatus;
use crate::protocol::StatsSample;
use crate::spec::{
    CommandKind, CommandSpec, CpuMax, DepRef, HealthCheck, Limits, LogTarget, OomAction, Probe,
    Readiness, RestartPolicy, WorkspaceSpec,
};

/// A [`WorkspaceSpec`] as saved: what a reboot recreates. The fields mean what they mean
/// there.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct SavedWorkspaceSpec {
    pub name: String,
    pub limits: SavedLimits,
    pub ttl_ms: Option<u64>,
    pub on_oom: SavedOomAction,
    pub commands: Vec<SavedCommandSpec>,
    /// From v4 on.
    pub pipelines: Vec<SavedPipelineSpec>,
}

/// [`Limits`] as saved.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct SavedLimits {
    pub memory_max: Option<u64>,
    pub memory_high: Option<u64>,
    pub memory_swap_max: Option<u64>,
    pub pids_max: Option<u64>,
    pub cpu_max: Option<SavedCpuMax>,
    pub cpu_weight: Option<u16>,
    pub io_weight: Option<u16>,
}

/// [`CpuMax`] as saved.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedCpuMax {
    pub quota_us: u64,
    pub period_us: u64,
}

/// [`OomAction`] as saved. Variant order is part of the format.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SavedOomAction {
    #[default]
    Restart,
    StopWorkspace,
}

/// [`CommandSpec`] as saved.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SavedCommandSpec {
    pub name: String,
    pub kind: SavedCommandKind,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub log: SavedLogTarget,
    pub restart: SavedRestartPolicy,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub max_restarts: u32,
    pub restart_window_ms: u64,
    pub min_uptime_ms: u64,
    pub stop_signal: i32,
    pub stop_grace_ms: u64,
    /// From v3 on, like the six after it.
    pub ready: SavedReadiness,
    pub ready_timeout_ms: u64,
    pub watchdog_ms: Option<u64>,
    pub after: Vec<SavedDepRef>,
    pub requires: Vec<SavedDepRef>,
    pub wants: Vec<SavedDepRef>,
    pub health: Option<SavedHealthCheck>,
    /// From v4 on, like the two after it.
    pub directories: Vec<SavedServiceDir>,
    pub rlimits: Vec<SavedRlimit>,
    pub kill_mode: SavedKillMode,
}

/// [`Readiness`] as saved. Variant order is part of the format.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub enum SavedReadiness {
    #[default]
    Started,
    Notify,
    Fd(u32),
    Line(String),
    Probe(SavedProbe),
}

/// [`Probe`] as saved. Variant order is part of the format.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum SavedProbe {
    Exec(Vec<String>),
    Tcp(String),
    Unix(String),
}

/// [`HealthCheck`] as saved.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SavedHealthCheck {
    pub probe: SavedProbe,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
}

/// [`DepRef`] as saved.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SavedDepRef {
    pub workspace: Option<String>,
    pub name: String,
}

/// [`CommandKind`] as saved. Variant order is part of the format.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SavedCommandKind {
    #[default]
    Task,
    Service,
}

/// [`RestartPolicy`] as saved. Variant order is part of the format.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SavedRestartPolicy {
    #[default]
    Never,
    OnFailure,
    Always,
}

/// [`LogTarget`] as saved. Variant order is part of the format.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub enum SavedLogTarget {
    #[default]
    Ring,
    Console,
    File(String),
}

/// An [`ExitStatus`] as saved: how a command's last run ended. Variant order is part of
/// the format.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavedExitStatus {
    Code(i32),
    Signal(i32),
    OomKilled,
}

/// A [`StatsSample`] as saved: one entry of a workspace's short stats history.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct SavedStatsSample {
    pub unix_ms: u64,
    pub memory_current: Option<u64>,
    pub memory_peak: Option<u64>,
    pub pids_current: Option<u64>,
    pub cpu_usage_us: Option<u64>,
    pub cpu_percent_x100: Option<u32>,
}

impl From<&WorkspaceSpec> for SavedWorkspaceSpec {
    fn from(spec: &WorkspaceSpec) -> Self {
        let WorkspaceSpec {
            name,
            limits,
            ttl_ms,
            on_oom,
            commands,
            pipelines,
        } = spec;
        SavedWorkspaceSpec {
            name: name.clone(),
            limits: limits.into(),
            ttl_ms: *ttl_ms,
            on_oom: (*on_oom).into(),
            commands: commands.iter().map(SavedCommandSpec::from).collect(),
            pipelines: pipelines.iter().map(SavedPipelineSpec::from).collect(),
        }
    }
}

impl SavedWorkspaceSpec {
    /// The card's form of this spec, as the runtime works with it.
    pub fn into_card(self) -> WorkspaceSpec {
        let SavedWorkspaceSpec {
            name,
            limits,
            ttl_ms,
            on_oom,
            commands,
            pipelines,
        } = self;
        WorkspaceSpec {
            name,
            limits: limits.into_card(),
            ttl_ms,
            on_oom: on_oom.into_card(),
            commands: commands
                .into_iter()
                .map(SavedCommandSpec::into_card)
                .collect(),
            pipelines: pipelines
                .into_iter()
                .map(SavedPipelineSpec::into_card)
                .collect(),
        }
    }
}

impl From<&Limits> for SavedLimits {
    fn from(limits: &Limits) -> Self {
        let Limits {
            memory_max,
            memory_high,
            memory_swap_max,
            pids_max,
            cpu_max,
            cpu_weight,
            io_weight,
        } = *limits;
        SavedLimits {
            memory_max,
            memory_high,
            memory_swap_max,
            pids_max,
            cpu_max: cpu_max.map(SavedCpuMax::from),
            cpu_weight,
            io_weight,
        }
    }
}

impl SavedLimits {
    /// The card's form of these limits.
    pub fn into_card(self) -> Limits {
        let SavedLimits {
            memory_max,
            memory_high,
            memory_swap_max,
            pids_max,
            cpu_max,
            cpu_weight,
            io_weight,
        } = self;
        Limits {
            memory_max,
            memory_high,
            memory_swap_max,
            pids_max,
            cpu_max: cpu_max.map(SavedCpuMax::into_card),
            cpu_weight,
            io_weight,
        }
    }
}

impl From<CpuMax> for SavedCpuMax {
    fn from(cpu_max: CpuMax) -> Self {
        let CpuMax {
            quota_us,
            period_us,
        } = cpu_max;
        SavedCpuMax {
            quota_us,
            period_us,
        }
    }
}

impl SavedCpuMax {
    /// The card's form of this cpu.max.
    pub fn into_card(self) -> CpuMax {
        let SavedCpuMax {
            quota_us,
            period_us,
        } = self;
        CpuMax {
            quota_us,
            period_us,
        }
    }
}

impl From<OomAction> for SavedOomAction {
    fn from(action: OomAction) -> Self {
        match action {
            OomAction::Restart => SavedOomAction::Restart,
            OomAction::StopWorkspace => SavedOomAction::StopWorkspace,
        }
    }
}

impl SavedOomAction {
    /// The card's form of this action.
    pub fn into_card(self) -> OomAction {
        match self {
            SavedOomAction::Restart => OomAction::Restart,
            SavedOomAction::StopWorkspace => OomAction::StopWorkspace,
        }
    }
}

impl From<&CommandSpec> for SavedCommandSpec {
    fn from(spec: &CommandSpec) -> Self {
        let CommandSpec {
            name,
            kind,
            argv,
            env,
            cwd,
            user,
            group,
            log,
            restart,
            backoff_initial_ms,
            backoff_max_ms,
            max_restarts,
            restart_window_ms,
            min_uptime_ms,
            stop_signal,
            stop_grace_ms,
            ready,
            ready_timeout_ms,
            watchdog_ms,
            after,
            requires,
            wants,
            health,
            directories,
            rlimits,
            kill_mode,
        } = spec;
        let deps = |refs: &[DepRef]| refs.iter().map(SavedDepRef::from).collect();
        SavedCommandSpec {
            name: name.clone(),
            kind: (*kind).into(),
            argv: argv.clone(),
            env: env.clone(),
            cwd: cwd.clone(),
            user: user.clone(),
            group: group.clone(),
            log: log.into(),
            restart: (*restart).into(),
            backoff_initial_ms: *backoff_initial_ms,
            backoff_max_ms: *backoff_max_ms,
            max_restarts: *max_restarts,
            restart_window_ms: *restart_window_ms,
            min_uptime_ms: *min_uptime_ms,
            stop_signal: *stop_signal,
            stop_grace_ms: *stop_grace_ms,
            ready: ready.into(),
            ready_timeout_ms: *ready_timeout_ms,
            watchdog_ms: *watchdog_ms,
            after: deps(after),
            requires: deps(requires),
            wants: deps(wants),
            health: health.as_ref().map(SavedHealthCheck::from),
            directories: directories.iter().map(SavedServiceDir::from).collect(),
            rlimits: rlimits.iter().map(SavedRlimit::from).collect(),
            kill_mode: (*kill_mode).into(),
        }
    }
}

impl SavedCommandSpec {
    /// The card's form of this command.
    pub fn into_card(self) -> CommandSpec {
        let SavedCommandSpec {
            name,
            kind,
            argv,
            env,
            cwd,
            user,
            group,
            log,
            restart,
            backoff_initial_ms,
            backoff_max_ms,
            max_restarts,
            restart_window_ms,
            min_uptime_ms,
            stop_signal,
            stop_grace_ms,
            ready,
            ready_timeout_ms,
            watchdog_ms,
            after,
            requires,
            wants,
            health,
            directories,
            rlimits,
            kill_mode,
        } = self;
        let deps = |refs: Vec<SavedDepRef>| refs.into_iter().map(SavedDepRef::into_card).collect();
        CommandSpec {
            name,
            kind: kind.into_card(),
            argv,
            env,
            cwd,
            user,
            group,
            log: log.into_card(),
            restart: restart.into_card(),
            backoff_initial_ms,
            backoff_max_ms,
            max_restarts,
            restart_window_ms,
            min_uptime_ms,
            stop_signal,
            stop_grace_ms,
            ready: ready.into_card(),
            ready_timeout_ms,
            watchdog_ms,
            after: deps(after),
            requires: deps(requires),
            wants: deps(wants),
            health: health.map(SavedHealthCheck::into_card),
            directories: directories
                .into_iter()
                .map(SavedServiceDir::into_card)
                .collect(),
            rlimits: rlimits.into_iter().map(SavedRlimit::into_card).collect(),
            kill_mode: kill_mode.into_card(),
        }
    }
}

impl From<&Readiness> for SavedReadiness {
    fn from(ready: &Readiness) -> Self {
        match ready {
            Readiness::Started => SavedReadiness::Started,
            Readiness::Notify => SavedReadiness::Notify,
            Readiness::Fd(fd) => SavedReadiness::Fd(*fd),
            Readiness::Line(text) => SavedReadiness::Line(text.clone()),
            Readiness::Probe(probe) => SavedReadiness::Probe(probe.into()),
        }
    }
}

impl SavedReadiness {
    /// The card's form of this readiness.
    pub fn into_card(self) -> Readiness {
        match self {
            SavedReadiness::Started => Readiness::Started,
            SavedReadiness::Notify => Readiness::Notify,
            SavedReadiness::Fd(fd) => Readiness::Fd(fd),
            SavedReadiness::Line(text) => Readiness::Line(text),
            SavedReadiness::Probe(probe) => Readiness::Probe(probe.into_card()),
        }
    }
}

impl From<&Probe> for SavedProbe {
    fn from(probe: &Probe) -> Self {
        match probe {
            Probe::Exec(argv) => SavedProbe::Exec(argv.clone()),
            Probe::Tcp(addr) => SavedProbe::Tcp(addr.clone()),
            Probe::Unix(path) => SavedProbe::Unix(path.clone()),
        }
    }
}

impl SavedProbe {
    /// The card's form of this probe.
    pub fn into_card(self) -> Probe {
        match self {
            SavedProbe::Exec(argv) => Probe::Exec(argv),
            SavedProbe::Tcp(addr) => Probe::Tcp(addr),
            SavedProbe::Unix(path) => Probe::Unix(path),
        }
    }
}

impl From<&HealthCheck> for SavedHealthCheck {
    fn from(health: &HealthCheck) -> Self {
        let HealthCheck {
            probe,
            interval_ms,
            timeout_ms,
            retries,
        } = health;
        SavedHealthCheck {
            probe: probe.into(),
            interval_ms: *interval_ms,
            timeout_ms: *timeout_ms,
            retries: *retries,
        }
    }
}

impl SavedHealthCheck {
    /// The card's form of this health check.
    pub fn into_card(self) -> HealthCheck {
        let SavedHealthCheck {
            probe,
            interval_ms,
            timeout_ms,
            retries,
        } = self;
        HealthCheck {
            probe: probe.into_card(),
            interval_ms,
            timeout_ms,
            retries,
        }
    }
}

impl From<&DepRef> for SavedDepRef {
    fn from(dep: &DepRef) -> Self {
        let DepRef { workspace, name } = dep;
        SavedDepRef {
            workspace: workspace.clone(),
            name: name.clone(),
        }
    }
}

impl SavedDepRef {
    /// The card's form of this dependency.
    pub fn into_card(self) -> DepRef {
        let SavedDepRef { workspace, name } = self;
        DepRef { workspace, name }
    }
}

impl From<CommandKind> for SavedCommandKind {
    fn from(kind: CommandKind) -> Self {
        match kind {
            CommandKind::Task => SavedCommandKind::Task,
            CommandKind::Service => SavedCommandKind::Service,
        }
    }
}

impl SavedCommandKind {
    /// The card's form of this kind.
    pub fn into_card(self) -> CommandKind {
        match self {
            SavedCommandKind::Task => CommandKind::Task,
            SavedCommandKind::Service => CommandKind::Service,
        }
    }
}

impl From<RestartPolicy> for SavedRestartPolicy {
    fn from(policy: RestartPolicy) -> Self {
        match policy {
            RestartPolicy::Never => SavedRestartPolicy::Never,
            RestartPolicy::OnFailure => SavedRestartPolicy::OnFailure,
            RestartPolicy::Always => SavedRestartPolicy::Always,
        }
    }
}

impl SavedRestartPolicy {
    /// The card's form of this policy.
    pub fn into_card(self) -> RestartPolicy {
        match self {
            SavedRestartPolicy::Never => RestartPolicy::Never,
            SavedRestartPolicy::OnFailure => RestartPolicy::OnFailure,
            SavedRestartPolicy::Always => RestartPolicy::Always,
        }
    }
}

impl From<&LogTarget> for SavedLogTarget {
    fn from(target: &LogTarget) -> Self {
        match target {
            LogTarget::Ring => SavedLogTarget::Ring,
            LogTarget::Console => SavedLogTarget::Console,
            LogTarget::File(path) => SavedLogTarget::File(path.clone()),
        }
    }
}

impl SavedLogTarget {
    /// The card's form of this target.
    pub fn into_card(self) -> LogTarget {
        match self {
            SavedLogTarget::Ring => LogTarget::Ring,
            SavedLogTarget::Console => LogTarget::Console,
            SavedLogTarget::File(path) => LogTarget::File(path),
        }
    }
}

impl From<ExitStatus> for SavedExitStatus {
    fn from(status: ExitStatus) -> Self {
        match status {
            ExitStatus::Code(code) => SavedExitStatus::Code(code),
            ExitStatus::Signal(signal) => SavedExitStatus::Signal(signal),
            ExitStatus::OomKilled => SavedExitStatus::OomKilled,
        }
    }
}

impl SavedExitStatus {
    /// The event journal's form of this exit status, as the supervisor keeps it.
    pub fn into_event(self) -> ExitStatus {
        match self {
            SavedExitStatus::Code(code) => ExitStatus::Code(code),
            SavedExitStatus::Signal(signal) => ExitStatus::Signal(signal),
            SavedExitStatus::OomKilled => ExitStatus::OomKilled,
        }
    }
}

impl From<&StatsSample> for SavedStatsSample {
    fn from(sample: &StatsSample) -> Self {
        let StatsSample {
            unix_ms,
            memory_current,
            memory_peak,
            pids_current,
            cpu_usage_us,
            cpu_percent_x100,
        } = *sample;
        SavedStatsSample {
            unix_ms,
            memory_current,
            memory_peak,
            pids_current,
            cpu_usage_us,
            cpu_percent_x100,
        }
    }
}

impl SavedStatsSample {
    /// The control protocol's form of this sample, as `shuma stats` shows it.
    pub fn into_protocol(self) -> StatsSample {
        let SavedStatsSample {
            unix_ms,
            memory_current,
            memory_peak,
            pids_current,
            cpu_usage_us,
            cpu_percent_x100,
        } = self;
        StatsSample {
            unix_ms,
            memory_current,
            memory_peak,
            pids_current,
            cpu_usage_us,
            cpu_percent_x100,
        }
    }
}
