//! The one error type of the cgroup module. Every variant names the path (or pid, or
//! workspace) it is about, so a log line is enough to find the file that refused.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum CgroupError {
    /// The cgroup root could not be opened.
    OpenCgroup { path: PathBuf, source: io::Error },
    /// The given root is not a cgroup2 mount (statfs magic differs).
    NotCgroup2 { path: PathBuf, magic: i64 },
    /// mkdir of a cgroup failed.
    CreateCgroup { path: PathBuf, source: io::Error },
    /// A write to a cgroup interface file failed (a limit, subtree_control, cgroup.procs,
    /// cgroup.kill). `value` is what was written.
    WriteFile {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    /// A read of a cgroup interface file (or /proc/<pid>/cgroup) failed.
    ReadFile { path: PathBuf, source: io::Error },
    /// A file read fine but did not have the kernel's format.
    Parse { path: PathBuf, detail: String },
    /// rmdir of a cgroup failed; EBUSY means it still has processes.
    RemoveCgroup { path: PathBuf, source: io::Error },
    /// arje may not create cgroups under the root it was given.
    NotDelegated { path: PathBuf, source: io::Error },
    /// A workspace or leaf name that cannot be a cgroup directory name.
    InvalidName { name: String, reason: &'static str },
    /// A `shuma ws set` key that is not a limit.
    UnknownLimit { key: String },
    /// Cgroups are disabled on this host; the reason says why.
    Disabled { reason: String },
    /// The kernel cannot start a child inside a cgroup (clone3 with CLONE_INTO_CGROUP,
    /// Linux 5.7), the spawner's only way to place one; `reason` is the probe's error.
    NoCloneIntoCgroup { reason: String },
    /// Sending SIGKILL to a pid of a cgroup (the fallback without cgroup.kill) failed.
    Kill {
        pid: i32,
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for CgroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CgroupError::OpenCgroup { path, source } => {
                write!(f, "cannot open cgroup {}: {source}", path.display())
            }
            CgroupError::NotCgroup2 { path, magic } => write!(
                f,
                "{} is not a cgroup2 mount (filesystem magic {magic:#x}; cgroup v1 or not mounted?)",
                path.display()
            ),
            CgroupError::CreateCgroup { path, source } => {
                write!(f, "cannot create cgroup {}: {source}", path.display())
            }
            CgroupError::WriteFile { path, value, source } => {
                write!(f, "cannot write {value:?} to {}: {source}", path.display())
            }
            CgroupError::ReadFile { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            CgroupError::Parse { path, detail } => {
                write!(f, "unexpected content in {}: {detail}", path.display())
            }
            CgroupError::RemoveCgroup { path, source } => {
                write!(f, "cannot remove cgroup {}: {source}", path.display())?;
                if source.raw_os_error() == Some(libc::EBUSY) {
                    // The kernel refuses rmdir of a populated cgroup (or one with children).
                    write!(f, " (still populated: kill it and wait for \"populated 0\" first)")?;
                }
                Ok(())
            }
            CgroupError::NotDelegated { path, source } => write!(
                f,
                "cgroup {} is not delegated to arje: {source} (see docs/CGROUPS.md, Delegate=yes)",
                path.display()
            ),
            CgroupError::InvalidName { name, reason } => {
                write!(f, "{name:?} cannot be a cgroup name: {reason}")
            }
            CgroupError::UnknownLimit { key } => write!(
                f,
                "unknown limit {key:?}: expected one of memory_max, memory_high, memory_swap_max, \
                 pids_max, cpu_max, cpu_weight, io_weight"
            ),
            CgroupError::Disabled { reason } => write!(f, "cgroups are disabled: {reason}"),
            CgroupError::NoCloneIntoCgroup { reason } => write!(
                f,
                "children cannot be born in a cgroup here, so no workspace gets one: {reason}"
            ),
            CgroupError::Kill { pid, path, source } => {
                write!(f, "cannot SIGKILL pid {pid} of {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for CgroupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CgroupError::OpenCgroup { source, .. }
            | CgroupError::CreateCgroup { source, .. }
            | CgroupError::WriteFile { source, .. }
            | CgroupError::ReadFile { source, .. }
            | CgroupError::RemoveCgroup { source, .. }
            | CgroupError::NotDelegated { source, .. }
            | CgroupError::Kill { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Short name of an errno for reasons shown to users ("EACCES", "EBUSY").
pub(crate) fn errno_name(err: &io::Error) -> String {
    let name = match err.raw_os_error() {
        Some(libc::EACCES) => "EACCES",
        Some(libc::EPERM) => "EPERM",
        Some(libc::EBUSY) => "EBUSY",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::EEXIST) => "EEXIST",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::EROFS) => "EROFS",
        Some(libc::ENOTSUP) => "EOPNOTSUPP",
        Some(libc::ESRCH) => "ESRCH",
        _ => return err.to_string(),
    };
    name.to_string()
}
