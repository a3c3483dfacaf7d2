//! The model: every workspace and command, and the id generators that name them. Plain
//! data with lookups; the runtime's handlers change it and the snapshot is encoded from it.

use std::collections::{BTreeMap, HashMap};

use super::commands::Command;
use super::pipelines::Pipeline;
use super::workspaces::Workspace;
use crate::ids::{CommandId, IdGen, PipelineId, WorkspaceId};

#[derive(Default)]
pub struct Table {
    /// By id; ids grow, so this is creation order.
    pub workspaces: BTreeMap<WorkspaceId, Workspace>,
    /// Name (the key users type) → id of the workspace that has it now.
    names: HashMap<String, WorkspaceId>,
    /// By id; ids grow, so this is creation order.
    pub commands: BTreeMap<CommandId, Command>,
    pub workspace_ids: IdGen<WorkspaceId>,
    pub command_ids: IdGen<CommandId>,
    /// Commands waiting for their dependencies before their first start (`deps.rs`).
    pub pending: std::collections::BTreeSet<CommandId>,
    /// `deps_progress` is running; a nested call asks it to go round once more instead.
    pub deps_running: bool,
    pub deps_again: bool,
    /// The same for `stop_progress`.
    pub stop_running: bool,
    pub stop_again: bool,
    /// Live pipelines (`pipelines.rs`), by id; each is also listed by its workspace.
    pub pipelines: BTreeMap<PipelineId, Pipeline>,
    pub pipeline_ids: IdGen<PipelineId>,
    /// Pipelines saved by name (`shuma pipeline save`), for `shuma pipeline run`.
    pub saved_pipelines: BTreeMap<String, shuma_card::PipelineSpec>,
}

impl Table {
    /// Every workspace's id (a copy: callers change the table as they go).
    pub fn workspace_ids(&self) -> Vec<WorkspaceId> {
        self.workspaces.keys().copied().collect()
    }

    /// The workspace called `name` now.
    pub fn id_of(&self, name: &str) -> Option<WorkspaceId> {
        self.names.get(name).copied()
    }

    pub fn named(&self, name: &str) -> Option<&Workspace> {
        self.workspaces.get(self.names.get(name)?)
    }

    pub fn workspace_name(&self, id: WorkspaceId) -> Option<String> {
        self.workspaces.get(&id).map(|w| w.spec.name.clone())
    }

    pub fn insert_workspace(&mut self, ws: Workspace) {
        self.names.insert(ws.spec.name.clone(), ws.id);
        self.workspaces.insert(ws.id, ws);
    }

    /// Remove a workspace and every command of it.
    pub fn remove_workspace(&mut self, id: WorkspaceId) -> Option<Workspace> {
        let ws = self.workspaces.remove(&id)?;
        self.names.remove(&ws.spec.name);
        for cmd in &ws.commands {
            self.commands.remove(cmd);
            self.pending.remove(cmd);
        }
        for p in &ws.pipelines {
            self.pipelines.remove(p);
        }
        Some(ws)
    }
}
