//! The runtime's view of cgroups: a thin adapter over [`crate::cgroup`].

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use shuma_card::protocol::Capability;
use shuma_card::Limits;

/// Set up cgroups for the mode: PID 1 uses /sys/fs/cgroup, a subreaper the
/// `--cgroup-root` it was given; without one, nothing is enforced and `shuma caps` says so.
pub fn setup(cfg: &crate::Config) -> Cgroups {
    match &cfg.cgroup_root {
        None => {
            Cgroups::disabled("no cgroup root given (subreaper mode without --cgroup-root)".into())
        }
        Some(_) => Cgroups::disabled("cgroup support is not wired up yet".into()),
    }
}

pub struct Cgroups {
    reason: String,
}

impl Cgroups {
    pub fn disabled(reason: String) -> Self {
        Cgroups { reason }
    }

    pub fn create_workspace(
        &self,
        _name: &str,
        limits: &Limits,
    ) -> Result<(Option<WorkspaceCgroup>, Vec<String>), String> {
        let mut w = Vec::new();
        if limits.memory_max.is_some() {
            w.push(format!("memory.max not enforced: {}", self.reason));
        }
        if limits.pids_max.is_some() {
            w.push(format!("pids.max not enforced: {}", self.reason));
        }
        Ok((None, w))
    }

    pub fn capabilities(&self) -> Vec<Capability> {
        Vec::new()
    }
}

pub struct WorkspaceCgroup {
    path: PathBuf,
}

impl WorkspaceCgroup {
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn create_leaf(&self, _name: &str) -> Result<Leaf, String> {
        Err("unsupported".into())
    }
    pub fn populated(&self) -> Result<bool, String> {
        Ok(false)
    }
    pub fn kill(&self) -> Result<(), String> {
        Ok(())
    }
    pub fn remove(&self) -> Result<(), String> {
        Ok(())
    }
    pub fn set_limits(&self, _l: &Limits) -> Result<(), String> {
        Ok(())
    }
}

pub struct Leaf {
    dir: std::os::fd::OwnedFd,
}

impl Leaf {
    pub fn dir(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.dir.as_fd()
    }
    pub fn kill(&self) -> Result<(), String> {
        Ok(())
    }
    pub fn oom_killed(&self) -> bool {
        false
    }
    pub fn remove(&self) -> Result<(), String> {
        Ok(())
    }
}
