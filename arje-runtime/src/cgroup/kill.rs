//! Killing every process of a cgroup subtree.
//!
//! Since Linux 5.14 one write of "1" to cgroup.kill SIGKILLs every process of the cgroup
//! and its descendants, and new forks in it fail while the kill runs, so a fork bomb
//! cannot outrun it. Without cgroup.kill the fallback reads cgroup.procs of every cgroup
//! of the subtree and SIGKILLs each pid. A process can fork between that read and the
//! kill, so the fallback first freezes the subtree (cgroup.freeze, Linux 5.2; SIGKILL
//! still reaches frozen tasks), and without a freezer repeats its passes.

use std::io;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::error::CgroupError;
use super::fs::{child_cgroups, read_cgroup_file, write_cgroup_file, Dir};
use super::{CGROUP_FREEZE, CGROUP_KILL, CGROUP_PROCS};

/// Passes of the freezer-less fallback before giving up on a subtree that keeps forking.
const MAX_UNFROZEN_PASSES: usize = 16;

/// SIGKILL everything in `dir` and below.
pub(crate) fn kill_cgroup(dir: &Dir) -> Result<(), CgroupError> {
    if dir.has_file(CGROUP_KILL) {
        return write_cgroup_file(dir, CGROUP_KILL, "1");
    }
    kill_each_pid(dir)
}

fn kill_each_pid(dir: &Dir) -> Result<(), CgroupError> {
    let frozen = dir.has_file(CGROUP_FREEZE) && write_cgroup_file(dir, CGROUP_FREEZE, "1").is_ok();
    let passes = if frozen { 1 } else { MAX_UNFROZEN_PASSES };
    let mut result = Ok(());
    for _ in 0..passes {
        let mut pids = Vec::new();
        if let Err(e) = collect_pids(dir, &mut pids) {
            result = Err(e);
            break;
        }
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                // Gone between the read and the kill: that is the goal anyway.
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => {
                    let source = io::Error::from_raw_os_error(e as i32);
                    result = Err(CgroupError::Kill {
                        pid,
                        path: dir.path.clone(),
                        source,
                    });
                }
            }
        }
    }
    if frozen {
        // Thawing lets the killed tasks run their exit; they cannot return to user space.
        write_cgroup_file(dir, CGROUP_FREEZE, "0")?;
    }
    result
}

/// Every pid in cgroup.procs of `dir` and its descendants.
fn collect_pids(dir: &Dir, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let text = read_cgroup_file(dir, CGROUP_PROCS)?;
    out.extend(
        text.split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok()),
    );
    for name in child_cgroups(dir)? {
        let child = dir
            .open_child(&name)
            .map_err(|source| CgroupError::OpenCgroup {
                path: dir.path.join(&name),
                source,
            })?;
        collect_pids(&child, out)?;
    }
    Ok(())
}
