//! Format version 3, frozen: readiness, dependencies and health in the saved spec
//! (issue 10).
//!
//! v4 added pipelines: a [`SavedWorkspaceSpec`] holds the workspace's `pipelines`, a
//! [`WorkspaceState`] each live pipeline's restart record, and the [`Snapshot`] the
//! pipelines saved with `shuma pipeline save`. The three types that changed are frozen
//! here as they were; the types v4 left alone ([`CommandState`], [`LiveProcess`],
//! [`SavedCommandSpec`] and the rest of `saved.rs`) are still shared with the current
//! schema. Whoever changes one of those in a later version freezes its v3 form here
//! first, as `v2.rs` froze every type of v2.

use serde::{Deserialize, Serialize};

use super::saved::{SavedCommandSpec, SavedLimits, SavedOomAction, SavedStatsSample};
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
    pub(super) commands: Vec<SavedCommandSpec>,
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
            commands,
            pipelines: Vec::new(),
        }
    }
}
