//! What /proc says about cgroups: the cgroup of a pid, and which controllers cgroup v1
//! holds.

use std::path::PathBuf;

use super::error::CgroupError;
use super::Controller;

/// The cgroup v2 path of `pid`, from the `0::` line of /proc/<pid>/cgroup: relative to the
/// cgroup namespace's root, e.g. "/arje/web/server". A process born with
/// CLONE_INTO_CGROUP reads its leaf here from its first instruction.
pub fn leaf_of_pid(pid: u32) -> Result<PathBuf, CgroupError> {
    let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
    let text = std::fs::read_to_string(&path).map_err(|source| CgroupError::ReadFile {
        path: path.clone(),
        source,
    })?;
    parse_proc_pid_cgroup(&text)
        .map(PathBuf::from)
        .ok_or_else(|| CgroupError::Parse {
            path,
            detail: "no cgroup v2 (\"0::\") line".into(),
        })
}

/// The path of the `0::` (unified hierarchy) line.
pub(crate) fn parse_proc_pid_cgroup(text: &str) -> Option<&str> {
    text.lines().find_map(|line| line.strip_prefix("0::"))
}

/// Where a controller is, according to /proc/cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostController {
    /// Not listed: the kernel was built without it.
    Absent,
    /// Listed with enabled = 0: `cgroup_disable=` on the kernel command line.
    Disabled,
    /// Bound to a cgroup v1 hierarchy (hierarchy id != 0), so cgroup2 cannot have it.
    BoundToV1(u32),
    /// Free for cgroup2 (hierarchy 0).
    OnV2,
}

/// Look `controller` up in the text of /proc/cgroups
/// (`#subsys_name hierarchy num_cgroups enabled`).
pub(crate) fn host_controller(proc_cgroups: &str, controller: Controller) -> HostController {
    for line in proc_cgroups.lines().filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 4 || fields[0] != controller.proc_cgroups_name() {
            continue;
        }
        if fields[3] == "0" {
            return HostController::Disabled;
        }
        return match fields[1].parse::<u32>() {
            Ok(0) | Err(_) => HostController::OnV2,
            Ok(h) => HostController::BoundToV1(h),
        };
    }
    HostController::Absent
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
        cpuset\t3\t1\t1\ncpu\t1\t1\t1\nmemory\t4\t12\t1\npids\t8\t1\t1\nhugetlb\t0\t1\t1\n\
        blkio\t0\t1\t0\n";

    #[test]
    fn test_parse_proc_pid_cgroup_hybrid_picks_unified_line() {
        // Arrange
        let text = "4:memory:/process_api/x\n1:cpu:/\n0::/arje/web/server\n";

        // Act
        let path = parse_proc_pid_cgroup(text);

        // Assert
        assert_eq!(path, Some("/arje/web/server"));
    }

    #[test]
    fn test_host_controller_hybrid_memory_bound_to_v1() {
        assert_eq!(
            host_controller(HYBRID, Controller::Memory),
            HostController::BoundToV1(4)
        );
        assert_eq!(
            host_controller(HYBRID, Controller::Io),
            HostController::Disabled
        );
    }

    #[test]
    fn test_host_controller_unlisted_absent() {
        assert_eq!(
            host_controller("#subsys_name\n", Controller::Pids),
            HostController::Absent
        );
    }
}
