//! Format version 3, frozen: readiness, dependencies and health in the saved spec
//! (issue 10).
//!
//! v4 added pipelines: a [`SavedWorkspaceSpec`] holds the workspace's `pipelines`, a
//! [`WorkspaceState`] each live pipeline's restart record, and the [`Snapshot`] the
//! pipelines saved with `shuma pipeline save`; and a saved command its `directories`,
//! `rlimits` and `kill_mode`. The four types that changed are frozen here as they were;
//! the types v4 left alone ([`CommandState`], [`LiveProcess`](super::LiveProcess) and
//! the rest of `saved.rs`) are still shared with the current schema. Whoever changes one
//! of those in a later version freezes its v3 form here first, as `v2.rs` froze every
//! type of v2.

use serde::{Deserialize, Serialize};

use super::saved::{
    SavedCommandKind, SavedCommandSpec, SavedDepRef, SavedHealthCheck, SavedLimits, SavedLogTarget,
    SavedOomAction, SavedReadiness, SavedRestartPolicy, SavedStatsSample,
};
use super::saved_exec::SavedKillMode;
use super::{
    decode_exact, CommandState, SavedWorkspaceSpec, Snapshot, SnapshotError, WorkspaceState,
};

/// Decodes a v3 payload strictly and migrates it to the current schema: no pipelines.
pub(super) fn decode(payload: &[u8]) -> Result<Snapshot, SnapshotError> {
    let v3: SnapshotV3 = decode_exact(payload)?;
    Ok(v3.migrate())
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(super) struct SnapshotV3 {
    pub(super) written_unix_ms: u64,
    pub(super) boot_id: String,
    pub(super) arje_pid: i32,
    pub(super) next_event_id: u64,
    pub(super) next_command_id: u64,
    pub(super) next_workspace_id: u64,
    pub(super) workspaces: Vec<WorkspaceStateV3>,
    pub(super) listener_fd: Option<i32>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(super) struct WorkspaceStateV3 {
    pub(super) id: u64,
    pub(super) spec: SavedWorkspaceSpecV3,
    pub(super) created_unix_ms: u64,
    pub(super) stopping: bool,
    pub(super) commands: Vec<CommandState>,
    pub(super) stats: Vec<SavedStatsSample>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(super) struct SavedWorkspaceSpecV3 {
    pub(super) name: String,
    pub(super) limits: SavedLimits,
    pub(super) ttl_ms: Option<u64>,
    pub(super) on_oom: SavedOomAction,
    pub(super) commands: Vec<SavedCommandSpecV3>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(super) struct SavedCommandSpecV3 {
    pub(super) name: String,
    pub(super) kind: SavedCommandKind,
    pub(super) argv: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) cwd: Option<String>,
    pub(super) user: Option<String>,
    pub(super) group: Option<String>,
    pub(super) log: SavedLogTarget,
    pub(super) restart: SavedRestartPolicy,
    pub(super) backoff_initial_ms: u64,
    pub(super) backoff_max_ms: u64,
    pub(super) max_restarts: u32,
    pub(super) restart_window_ms: u64,
    pub(super) min_uptime_ms: u64,
    pub(super) stop_signal: i32,
    pub(super) stop_grace_ms: u64,
    pub(super) ready: SavedReadiness,
    pub(super) ready_timeout_ms: u64,
    pub(super) watchdog_ms: Option<u64>,
    pub(super) after: Vec<SavedDepRef>,
    pub(super) requires: Vec<SavedDepRef>,
    pub(super) wants: Vec<SavedDepRef>,
    pub(super) health: Option<SavedHealthCheck>,
}

impl SavedCommandSpecV3 {
    /// No directories, no resource limits, the whole run signalled on a stop: how every
    /// v3 command behaved.
    fn migrate(self) -> SavedCommandSpec {
        let SavedCommandSpecV3 {
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
        } = self;
        SavedCommandSpec {
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
            directories: Vec::new(),
            rlimits: Vec::new(),
            kill_mode: SavedKillMode::ControlGroup,
        }
    }
}

impl SnapshotV3 {
    pub(super) fn migrate(self) -> Snapshot {
        let SnapshotV3 {
            written_unix_ms,
            boot_id,
            arje_pid,
            next_event_id,
            next_command_id,
            next_workspace_id,
            workspaces,
            listener_fd,
        } = self;
        Snapshot {
            written_unix_ms,
            boot_id,
            arje_pid,
            next_event_id,
            next_command_id,
            next_workspace_id,
            workspaces: workspaces
                .into_iter()
                .map(WorkspaceStateV3::migrate)
                .collect(),
            listener_fd,
            saved_pipelines: Vec::new(),
        }
    }
}

impl WorkspaceStateV3 {
    fn migrate(self) -> WorkspaceState {
        let WorkspaceStateV3 {
            id,
            spec,
            created_unix_ms,
            stopping,
            commands,
            stats,
        } = self;
        WorkspaceState {
            id,
            spec: spec.migrate(),
            created_unix_ms,
            stopping,
            commands,
            stats,
            pipelines: Vec::new(),
        }
    }
}

impl SavedWorkspaceSpecV3 {
    pub(super) fn migrate(self) -> SavedWorkspaceSpec {
        let SavedWorkspaceSpecV3 {
            name,
            limits,
            ttl_ms,
            on_oom,
            commands,
        } = self;
        SavedWorkspaceSpec {
            name,
            limits,
            ttl_ms,
            on_oom,
            commands: commands
                .into_iter()
                .map(SavedCommandSpecV3::migrate)
                .collect(),
            pipelines: Vec::new(),
        }
    }
}
