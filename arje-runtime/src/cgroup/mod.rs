//! cgroup v2 workspaces: each workspace a cgroup, each command run a leaf below it,
//! limits written before anything runs, children born inside (the spawner passes a
//! leaf's fd to clone3 with CLONE_INTO_CGROUP, its only way to place a child, so setup
//! refuses a kernel without it), OOM kills and refused forks read from the kernel's
//! events files, and an honest list of what cannot be enforced here.
//!
//! Layout (see docs/CGROUPS.md):
//!
//! ```text
//! <root>/                  PID 1: /sys/fs/cgroup; subreaper: --cgroup-root PATH
//! <root>/arje-init/        arje itself, when it must leave <root> (subreaper, or a non-root <root>)
//! <root>/arje/             every workspace; subtree_control enables the controllers
//! <root>/arje/<ws>/        one workspace: its limits; subtree_control enables the controllers
//! <root>/arje/<ws>/<leaf>  one command run: processes only, never subtree_control
//! ```
//!
//! Files: `setup.rs` (the tree and what it supports), `workspace.rs` (workspaces and
//! leaves), one file per controller (`memory.rs`, `pids.rs`, `cpu.rs`, `io.rs`),
//! `events.rs` (events files and epoll), `kill.rs`, `limits.rs`, `caps.rs`, `proc.rs`,
//! and `fs.rs`, through which every read and write of cgroupfs goes.

mod caps;
mod cpu;
mod error;
mod events;
mod fs;
mod io;
mod kill;
mod limits;
mod memory;
mod pids;
mod proc;
mod setup;
mod workspace;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
pub(crate) use {fs::Dir, setup::HostInfo};
#[cfg(test)]
mod host_tests;
#[cfg(test)]
mod tests;

pub use cpu::cpu_percent_x100;
pub use error::CgroupError;
pub use events::{parse_populated, read_events, EventsFile};
pub use memory::MemoryEvents;
pub use pids::parse_pids_events;
pub use setup::{Cgroups, Setup};
pub use workspace::{Leaf, WorkspaceCgroup};

/// The directory below the root that holds every workspace.
pub const ARJE_SUBTREE: &str = "arje";
/// arje's own leaf, when it must move out of the root (no internal processes rule).
pub const ARJE_INIT_LEAF: &str = "arje-init";

// Kernel interface file names (Documentation/admin-guide/cgroup-v2.rst).
pub const CGROUP_CONTROLLERS: &str = "cgroup.controllers";
pub const CGROUP_SUBTREE_CONTROL: &str = "cgroup.subtree_control";
pub const CGROUP_PROCS: &str = "cgroup.procs";
pub const CGROUP_EVENTS: &str = "cgroup.events";
pub const CGROUP_KILL: &str = "cgroup.kill";
pub const CGROUP_FREEZE: &str = "cgroup.freeze";
/// Exists in every cgroup except the real root: how a namespace root is told apart.
pub const CGROUP_TYPE: &str = "cgroup.type";
pub const CPU_STAT: &str = "cpu.stat";
pub const CPU_MAX: &str = "cpu.max";
pub const CPU_WEIGHT: &str = "cpu.weight";
pub const IO_WEIGHT: &str = "io.weight";
pub const MEMORY_MAX: &str = "memory.max";
pub const MEMORY_HIGH: &str = "memory.high";
pub const MEMORY_SWAP_MAX: &str = "memory.swap.max";
pub const MEMORY_CURRENT: &str = "memory.current";
pub const MEMORY_PEAK: &str = "memory.peak";
pub const MEMORY_EVENTS: &str = "memory.events";
pub const PIDS_MAX: &str = "pids.max";
pub const PIDS_CURRENT: &str = "pids.current";
pub const PIDS_EVENTS: &str = "pids.events";

/// The controllers arje enables for workspaces. cpuset, hugetlb, rdma and misc are left
/// alone: no card field needs them, and each enabled controller costs every cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    Cpu,
    Io,
    Memory,
    Pids,
}

impl Controller {
    /// In the kernel's order (the order cgroup.controllers lists them).
    pub const ALL: [Controller; 4] = [
        Controller::Cpu,
        Controller::Io,
        Controller::Memory,
        Controller::Pids,
    ];

    /// The name in cgroup.controllers and cgroup.subtree_control.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Io => "io",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
        }
    }

    /// The name in /proc/cgroups, which keeps cgroup v1's names ("blkio" for io).
    pub(crate) fn proc_cgroups_name(self) -> &'static str {
        match self {
            Controller::Io => "blkio",
            other => other.name(),
        }
    }
}

/// Refuse names that cannot be a cgroup directory of arje's: the card's charset
/// (`[a-z0-9][a-z0-9._-]*`, which also rules out "." and ".."), at most NAME_MAX bytes,
/// and no `<controller>.` or `cgroup.` prefix, because the kernel's interface files live
/// in the same directory (a command named "memory.max" would collide with a file, and
/// "io.x" could collide with a file a future kernel adds).
pub(crate) fn check_name(name: &str) -> Result<(), CgroupError> {
    let bad = |reason| {
        Err(CgroupError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    let bytes = name.as_bytes();
    match bytes.first() {
        None => return bad("empty"),
        Some(c) if !(c.is_ascii_lowercase() || c.is_ascii_digit()) => {
            return bad("must start with a-z or 0-9")
        }
        _ => {}
    }
    if bytes.len() > 255 {
        return bad("longer than 255 bytes");
    }
    let charset_ok = bytes
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'));
    if !charset_ok {
        return bad("only a-z, 0-9, '.', '_' and '-' are allowed");
    }
    const RESERVED: &[&str] = &[
        "cgroup", "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc", "irq",
    ];
    if let Some((prefix, _)) = name.split_once('.') {
        if RESERVED.contains(&prefix) {
            return bad("the <controller>.* names belong to the kernel's interface files");
        }
    }
    Ok(())
}
