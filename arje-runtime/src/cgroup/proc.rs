//! What /proc/cgroups says: which controllers cgroup v1 holds, so that a controller
//! missing from cgroup2 can be explained.

use super::Controller;

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
