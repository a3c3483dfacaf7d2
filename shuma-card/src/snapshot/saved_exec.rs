//! The snapshot's own copies of the command fields format v4 added for a host's daemons
//! (per-service directories, resource limits, the kill mode), with lossless conversions
//! to and from their card types, as `saved.rs` has for the rest.

use serde::{Deserialize, Serialize};

use crate::spec::{DirKind, KillMode, Rlimit, ServiceDir};

/// [`ServiceDir`] as saved.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SavedServiceDir {
    pub kind: SavedDirKind,
    pub path: String,
    pub mode: u32,
}

/// [`DirKind`] as saved. Variant order is part of the format.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavedDirKind {
    Runtime,
    State,
    Cache,
    Logs,
    Configuration,
}

/// [`Rlimit`] as saved.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SavedRlimit {
    pub resource: String,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// [`KillMode`] as saved. Variant order is part of the format.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SavedKillMode {
    #[default]
    ControlGroup,
    Process,
}

impl From<&ServiceDir> for SavedServiceDir {
    fn from(d: &ServiceDir) -> Self {
        let ServiceDir { kind, path, mode } = d;
        SavedServiceDir {
            kind: match kind {
                DirKind::Runtime => SavedDirKind::Runtime,
                DirKind::State => SavedDirKind::State,
                DirKind::Cache => SavedDirKind::Cache,
                DirKind::Logs => SavedDirKind::Logs,
                DirKind::Configuration => SavedDirKind::Configuration,
            },
            path: path.clone(),
            mode: *mode,
        }
    }
}

impl SavedServiceDir {
    pub fn into_card(self) -> ServiceDir {
        let SavedServiceDir { kind, path, mode } = self;
        ServiceDir {
            kind: match kind {
                SavedDirKind::Runtime => DirKind::Runtime,
                SavedDirKind::State => DirKind::State,
                SavedDirKind::Cache => DirKind::Cache,
                SavedDirKind::Logs => DirKind::Logs,
                SavedDirKind::Configuration => DirKind::Configuration,
            },
            path,
            mode,
        }
    }
}

impl From<&Rlimit> for SavedRlimit {
    fn from(r: &Rlimit) -> Self {
        let Rlimit {
            resource,
            soft,
            hard,
        } = r;
        SavedRlimit {
            resource: resource.clone(),
            soft: *soft,
            hard: *hard,
        }
    }
}

impl SavedRlimit {
    pub fn into_card(self) -> Rlimit {
        let SavedRlimit {
            resource,
            soft,
            hard,
        } = self;
        Rlimit {
            resource,
            soft,
            hard,
        }
    }
}

impl From<KillMode> for SavedKillMode {
    fn from(k: KillMode) -> Self {
        match k {
            KillMode::ControlGroup => SavedKillMode::ControlGroup,
            KillMode::Process => SavedKillMode::Process,
        }
    }
}

impl SavedKillMode {
    pub fn into_card(self) -> KillMode {
        match self {
            SavedKillMode::ControlGroup => KillMode::ControlGroup,
            SavedKillMode::Process => KillMode::Process,
        }
    }
}
