//! Workspaces and their command leaves.
//!
//! A workspace is `<root>/arje/<name>`: its limits are written there, and its
//! subtree_control enables the controllers because it is a parent. Each command run is a
//! leaf below it, the only place processes live. The kernel rule that shapes this: a
//! non-root cgroup with controllers enabled in its subtree_control cannot hold processes
//! (clone3 into it fails with EBUSY), so a workspace never gets processes and a leaf
//! never gets subtree_control.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use shuma_card::protocol::StatsSample;
use shuma_card::spec::Limits;

use super::cpu::parse_cpu_usage_usec;
use super::error::CgroupError;
use super::events::{open_events, parse_populated, EventsFile};
use super::fs::{child_cgroups, mkdir_cgroup, read_cgroup_file, read_optional, rmdir_cgroup};
use super::fs::{write_cgroup_file, Dir};
use super::kill::kill_cgroup;
use super::limits::LimitKey;
use super::memory::MemoryEvents;
use super::setup::{Cgroups, Tree};
use super::{check_name, CGROUP_EVENTS, CGROUP_PROCS, CGROUP_SUBTREE_CONTROL, CPU_STAT};
use super::{MEMORY_CURRENT, MEMORY_EVENTS, MEMORY_PEAK, PIDS_CURRENT};

/// One workspace's cgroup: `<root>/arje/<name>`.
#[derive(Debug)]
pub struct WorkspaceCgroup {
    name: String,
    dir: Dir,
}

/// One command run's leaf: `<root>/arje/<workspace>/<leaf>`.
#[derive(Debug)]
pub struct Leaf {
    pub(super) dir: Dir,
}

/// What a limit change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitReport {
    /// The file written.
    pub file: &'static str,
    /// The value written, the kernel's way.
    pub value: String,
    /// Times the OOM killer ran during the write (a lowered memory.max that reclaim
    /// could not meet).
    pub oom: u64,
    /// Processes it killed during the write.
    pub oom_kill: u64,
}

impl Cgroups {
    fn tree(&self) -> Result<&Tree, CgroupError> {
        self.tree.as_ref().ok_or_else(|| CgroupError::Disabled {
            reason: self
                .caps
                .get(super::caps::Feature::MemoryMax)
                .err()
                .unwrap_or_default(),
        })
    }

    /// mkdir `<root>/arje/<name>`, enable the controllers in its subtree_control (it is
    /// the parent of the command leaves) and write every limit of `limits` that can be
    /// enforced, all before anything runs in it. Returns the workspace and the warnings:
    /// one line per limit that is set but not enforced ([`Cgroups::unenforced`]).
    ///
    /// An existing cgroup of that name is an error (CreateCgroup, EEXIST): after a
    /// re-exec use [`Cgroups::open_workspace`]. On a failed write the new cgroup is
    /// removed again. Fails with `Disabled` when there is no cgroup tree.
    pub fn create_workspace(
        &self,
        name: &str,
        limits: &Limits,
    ) -> Result<(WorkspaceCgroup, Vec<String>), CgroupError> {
        let tree = self.tree()?;
        check_name(name)?;
        let path = tree.arje.path.join(name);
        mkdir_cgroup(&tree.arje, name).map_err(|source| CgroupError::CreateCgroup {
            path: path.clone(),
            source,
        })?;
        let dir = tree
            .arje
            .open_child(name)
            .map_err(|source| CgroupError::OpenCgroup {
                path: path.clone(),
                source,
            })?;
        let ws = WorkspaceCgroup {
            name: name.to_string(),
            dir,
        };
        if let Err(e) = self.configure(tree, &ws, limits) {
            // Leave no half-configured workspace behind; the error says what failed.
            let _ = rmdir_cgroup(&tree.arje, name);
            return Err(e);
        }
        Ok((ws, self.unenforced(limits)))
    }

    fn configure(
        &self,
        tree: &Tree,
        ws: &WorkspaceCgroup,
        limits: &Limits,
    ) -> Result<(), CgroupError> {
        if !tree.enabled.is_empty() {
            let line: Vec<String> = tree
                .enabled
                .iter()
                .map(|c| format!("+{}", c.name()))
                .collect();
            write_cgroup_file(&ws.dir, CGROUP_SUBTREE_CONTROL, &line.join(" "))?;
        }
        for key in LimitKey::ALL {
            if key.is_set(limits) && self.caps.get(key.feature()).is_ok() {
                write_cgroup_file(&ws.dir, key.file(), &key.value(limits))?;
            }
        }
        Ok(())
    }

    /// Reattach to an existing workspace cgroup and write `limits` into it again: a start
    /// from a snapshot older than the tree (a crashed arje's /run copy was lost), whose
    /// files may hold other values.
    pub fn reopen_workspace(
        &self,
        name: &str,
        limits: &Limits,
    ) -> Result<WorkspaceCgroup, CgroupError> {
        let tree = self.tree()?;
        let ws = self.open_workspace(name)?;
        self.configure(tree, &ws, limits)?;
        Ok(ws)
    }

    /// Names of the workspace cgroups that exist below `<root>/arje`, whoever made them.
    pub fn workspace_names(&self) -> Result<Vec<String>, CgroupError> {
        child_cgroups(&self.tree()?.arje)
    }

    /// Reattach to an existing workspace cgroup (after a re-exec).
    pub fn open_workspace(&self, name: &str) -> Result<WorkspaceCgroup, CgroupError> {
        let tree = self.tree()?;
        check_name(name)?;
        let dir = tree
            .arje
            .open_child(name)
            .map_err(|source| CgroupError::OpenCgroup {
                path: tree.arje.path.join(name),
                source,
            })?;
        Ok(WorkspaceCgroup {
            name: name.to_string(),
            dir,
        })
    }
}

impl WorkspaceCgroup {
    pub fn path(&self) -> &Path {
        &self.dir.path
    }

    /// mkdir a leaf for one command run and open it O_RDONLY|O_DIRECTORY|O_CLOEXEC; its
    /// fd is what clone3 takes with CLONE_INTO_CGROUP. An existing leaf is reused (a
    /// service restart); its processes, if any, are left alone. The leaf never gets subtree_control: it holds the processes,
    /// and a cgroup with controllers enabled below it may not (no internal processes).
    pub fn create_leaf(&self, leaf: &str) -> Result<Leaf, CgroupError> {
        check_name(leaf)?;
        match mkdir_cgroup(&self.dir, leaf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(CgroupError::CreateCgroup {
                    path: self.dir.path.join(leaf),
                    source,
                })
            }
        }
        self.open_leaf(leaf)
    }

    /// Open an existing leaf (after a re-exec).
    pub fn open_leaf(&self, leaf: &str) -> Result<Leaf, CgroupError> {
        check_name(leaf)?;
        let dir = self
            .dir
            .open_child(leaf)
            .map_err(|source| CgroupError::OpenCgroup {
                path: self.dir.path.join(leaf),
                source,
            })?;
        Ok(Leaf { dir })
    }

    /// rmdir one leaf; EBUSY while it still has processes.
    pub fn remove_leaf(&self, leaf: &str) -> Result<(), CgroupError> {
        check_name(leaf)?;
        rmdir_cgroup(&self.dir, leaf).map_err(|source| CgroupError::RemoveCgroup {
            path: self.dir.path.join(leaf),
            source,
        })
    }

    /// Names of the leaves that exist.
    pub fn leaves(&self) -> Result<Vec<String>, CgroupError> {
        child_cgroups(&self.dir)
    }

    /// Write one limit while the workspace runs: `key` is the protocol key
    /// ("memory_max"), the value is taken from `limits` (already updated by the card's
    /// `parse_limit`; an unset limit writes the kernel default, "max"). A lowered
    /// memory.max may reclaim or OOM-kill inside the write; the report counts what the
    /// OOM killer did meanwhile.
    pub fn set_limit(&self, key: &str, limits: &Limits) -> Result<LimitReport, CgroupError> {
        let key = LimitKey::from_key(key).ok_or_else(|| CgroupError::UnknownLimit {
            key: key.to_string(),
        })?;
        let value = key.value(limits);
        // The OOM count is a report, not a precondition: without memory.events (no memory
        // controller) the write itself fails and says which file is missing.
        let oom_counts = || match key {
            LimitKey::MemoryMax => self.memory_events().ok(),
            _ => None,
        };
        let before = oom_counts();
        write_cgroup_file(&self.dir, key.file(), &value)?;
        let delta = match (before, oom_counts()) {
            (Some(before), Some(after)) => after.since(&before),
            _ => MemoryEvents::default(),
        };
        Ok(LimitReport {
            file: key.file(),
            value,
            oom: delta.oom,
            oom_kill: delta.oom_kill,
        })
    }

    /// SIGKILL every process of the workspace, leaves and anything they created below.
    pub fn kill(&self) -> Result<(), CgroupError> {
        kill_cgroup(&self.dir)
    }

    /// `populated` of cgroup.events: does any process live in the workspace? It turns 0
    /// when the last one exits (zombies included: they leave the cgroup at exit).
    pub fn populated(&self) -> Result<bool, CgroupError> {
        populated(&self.dir)
    }

    /// An fd on one of the workspace's events files, for epoll with EPOLLPRI (see
    /// `events.rs` for the kernel's notification rule). For OOM kills and refused forks
    /// also watch each leaf's files: see [`WorkspaceCgroup::memory_events`] and `pids.rs`
    /// for where the kernel counts them.
    pub fn open_events_file(&self, which: EventsFile) -> Result<OwnedFd, CgroupError> {
        open_events(&self.dir, which)
    }

    /// memory.events of the workspace. `oom_kill` (and `oom_group_kill`) is counted in
    /// the victim's leaf and, unless cgroup2 is mounted with memory_localevents, in each
    /// ancestor; so the workspace's own count is either the sum of its leaves' (plus
    /// leaves already removed) or 0. The larger of the two is right under both options.
    pub fn memory_events(&self) -> Result<MemoryEvents, CgroupError> {
        let mut events = MemoryEvents::parse(&read_cgroup_file(&self.dir, MEMORY_EVENTS)?);
        let (mut kills, mut group_kills) = (0, 0);
        for leaf in self.leaves()? {
            let leaf = self.open_leaf(&leaf)?;
            if let Some(text) = read_optional(&leaf.dir, MEMORY_EVENTS)? {
                let ev = MemoryEvents::parse(&text);
                kills += ev.oom_kill;
                group_kills += ev.oom_group_kill;
            }
        }
        events.oom_kill = events.oom_kill.max(kills);
        events.oom_group_kill = events.oom_group_kill.max(group_kills);
        Ok(events)
    }

    /// One stats sample. Files a controller or kernel lacks (memory.peak came in 5.19)
    /// leave their field `None`; cpu.stat exists without the cpu controller.
    /// `cpu_percent_x100` is left `None`: the caller computes it from two samples with
    /// [`super::cpu_percent_x100`].
    pub fn stats(&self) -> Result<StatsSample, CgroupError> {
        let number = |file: &str| -> Result<Option<u64>, CgroupError> {
            match read_optional(&self.dir, file)? {
                None => Ok(None),
                Some(text) => text
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| CgroupError::Parse {
                        path: self.dir.file_path(file),
                        detail: format!("{:?} is not a number", text.trim()),
                    }),
            }
        };
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Ok(StatsSample {
            unix_ms,
            memory_current: number(MEMORY_CURRENT)?,
            memory_peak: number(MEMORY_PEAK)?,
            pids_current: number(PIDS_CURRENT)?,
            cpu_usage_us: read_optional(&self.dir, CPU_STAT)?
                .as_deref()
                .and_then(parse_cpu_usage_usec),
            cpu_percent_x100: None,
        })
    }

    /// rmdir every cgroup below the workspace, deepest first, then the workspace itself.
    /// The kernel refuses (EBUSY) while a cgroup has processes: kill, wait for
    /// `populated 0`, then remove. The error names the cgroup that refused.
    pub fn remove(&self) -> Result<(), CgroupError> {
        remove_children(&self.dir)?;
        let parent = self.dir.path.parent().unwrap_or(Path::new("/"));
        let parent = Dir::open(parent).map_err(|source| CgroupError::OpenCgroup {
            path: parent.to_path_buf(),
            source,
        })?;
        rmdir_cgroup(&parent, &self.name).map_err(|source| CgroupError::RemoveCgroup {
            path: self.dir.path.clone(),
            source,
        })
    }
}

/// rmdir the descendants of `dir`, deepest first (a leaf may have children if a command
/// running as root made its own cgroups).
fn remove_children(dir: &Dir) -> Result<(), CgroupError> {
    for name in child_cgroups(dir)? {
        let path = dir.path.join(&name);
        let child = dir
            .open_child(&name)
            .map_err(|source| CgroupError::OpenCgroup {
                path: path.clone(),
                source,
            })?;
        remove_children(&child)?;
        rmdir_cgroup(dir, &name).map_err(|source| CgroupError::RemoveCgroup { path, source })?;
    }
    Ok(())
}

fn populated(dir: &Dir) -> Result<bool, CgroupError> {
    let text = read_cgroup_file(dir, CGROUP_EVENTS)?;
    parse_populated(&text).ok_or_else(|| CgroupError::Parse {
        path: dir.file_path(CGROUP_EVENTS),
        detail: "no \"populated\" line".into(),
    })
}

impl Leaf {
    /// The directory fd for clone3's `cgroup` field with CLONE_INTO_CGROUP. It is
    /// O_CLOEXEC, so children never inherit it.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.dir.fd()
    }

    /// memory.events of this command run: `oom_kill` > 0 means the kernel's OOM killer
    /// killed a process of it. Read before reaping to attribute a SIGKILL.
    pub fn memory_events(&self) -> Result<MemoryEvents, CgroupError> {
        Ok(MemoryEvents::parse(&read_cgroup_file(
            &self.dir,
            MEMORY_EVENTS,
        )?))
    }

    pub fn open_events_file(&self, which: EventsFile) -> Result<OwnedFd, CgroupError> {
        open_events(&self.dir, which)
    }

    /// SIGKILL every process of this command run.
    pub fn kill(&self) -> Result<(), CgroupError> {
        kill_cgroup(&self.dir)
    }

    /// The pids in the leaf itself (its cgroup.procs; a cgroup below it, which a command
    /// running as root may make, is not read).
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        let text = read_cgroup_file(&self.dir, CGROUP_PROCS)?;
        Ok(text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// Does any process live in the leaf or below it?
    pub fn populated(&self) -> Result<bool, CgroupError> {
        populated(&self.dir)
    }
}
