//! Setting arje's part of the cgroup tree up, once at start: make sure children can be
//! born in a cgroup at all, find what the kernel offers, get arje itself out of the way
//! of the no-internal-processes rule, enable controllers top-down, and record for every
//! feature whether it is enforced and, if not, why.

use std::io;
use std::path::Path;

use shuma_card::protocol::Capability;
use shuma_card::spec::Limits;

use super::caps::{Caps, Feature};
use super::error::{errno_name, CgroupError};
use super::fs::{mkdir_cgroup, read_cgroup_file, write_cgroup_file, Dir};
use super::proc::{host_controller, HostController};
use super::{Controller, ARJE_INIT_LEAF, ARJE_SUBTREE, CGROUP_CONTROLLERS, CGROUP_PROCS};
use super::{CGROUP_SUBTREE_CONTROL, CGROUP_TYPE};
use crate::sys::spawn::{probe_clone_into_cgroup, SpawnError};

/// statfs(2) f_type of a cgroup2 mount.
pub(super) const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

pub(super) fn fs_magic(fs: &rustix::fs::StatFs) -> i64 {
    // f_type is a c_long here and a u32 on some targets.
    #[allow(clippy::unnecessary_cast)]
    let magic = fs.f_type as i64;
    magic
}

/// How arje runs, which decides whether it must move itself into a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// PID 1: arje stays in the root cgroup, which the kernel exempts from the
    /// no-internal-processes rule (kernel threads live there too). If the "root" is not
    /// the real root (PID 1 of a container with a cgroup namespace), the exemption does
    /// not hold and arje moves itself to `<root>/arje-init` like a subreaper.
    Pid1,
    /// Subreaper: the root is a delegated cgroup that usually contains arje itself;
    /// arje moves itself to `<root>/arje-init` before enabling controllers in `<root>`.
    Subreaper,
}

/// What setup reads about the host besides the cgroup tree; a parameter so that tests
/// can play a hybrid host or an old kernel.
#[derive(Debug)]
pub(crate) struct HostInfo {
    /// The text of /proc/cgroups, if readable.
    pub(crate) proc_cgroups: Option<String>,
    /// Whether clone3 can start a child inside a cgroup (`CLONE_INTO_CGROUP`).
    pub(crate) clone_into_cgroup: Result<(), SpawnError>,
}

impl HostInfo {
    fn probe() -> HostInfo {
        HostInfo {
            proc_cgroups: std::fs::read_to_string("/proc/cgroups").ok(),
            clone_into_cgroup: probe_clone_into_cgroup(),
        }
    }
}

/// arje's cgroup tree, or the reason it has none. Built once by [`Cgroups::setup`] (or
/// [`Cgroups::disabled`]); creating workspaces never changes it.
#[derive(Debug)]
pub struct Cgroups {
    pub(super) tree: Option<Tree>,
    pub(super) caps: Caps,
}

#[derive(Debug)]
pub(super) struct Tree {
    /// `<root>/arje`, the parent of every workspace.
    pub(super) arje: Dir,
    /// Controllers enabled in `<root>/arje/cgroup.subtree_control`: what a workspace has.
    pub(super) enabled: Vec<Controller>,
}

impl Cgroups {
    /// Set arje's cgroup tree up below `root`, a cgroup2 mount or a directory of one:
    /// `/sys/fs/cgroup` as PID 1 (mounted by arje-init), the `--cgroup-root` in subreaper
    /// mode. `self_pid` is arje's own pid, moved (one cgroup.procs write, at start only)
    /// into `<root>/arje-init` when `mode` requires it.
    ///
    /// Errors only when there is no usable tree at all (not cgroup2, no right to mkdir
    /// `<root>/arje`, or a kernel that cannot start a child inside a cgroup); a missing
    /// controller or a refused subtree_control write is recorded as unenforced instead. The caller turns an error into
    /// `Cgroups::disabled(err.to_string())` and carries on.
    pub fn setup(root: &Path, self_pid: u32, mode: Setup) -> Result<Cgroups, CgroupError> {
        let dir = Dir::open(root).map_err(|source| CgroupError::OpenCgroup {
            path: root.to_path_buf(),
            source,
        })?;
        let fs = rustix::fs::fstatfs(&dir.fd).map_err(|e| CgroupError::ReadFile {
            path: root.to_path_buf(),
            source: e.into(),
        })?;
        let magic = fs_magic(&fs);
        if magic != CGROUP2_SUPER_MAGIC {
            return Err(CgroupError::NotCgroup2 {
                path: root.to_path_buf(),
                magic,
            });
        }
        Cgroups::setup_in(dir, self_pid, mode, &HostInfo::probe())
    }

    /// [`Cgroups::setup`] without the statfs check, on a host described by `host`.
    pub(crate) fn setup_in(
        root: Dir,
        self_pid: u32,
        mode: Setup,
        host: &HostInfo,
    ) -> Result<Cgroups, CgroupError> {
        // clone3 with CLONE_INTO_CGROUP is the only way the spawner places a child. Without
        // it no command would run inside its workspace, and every limit written there
        // would be a claim about an empty cgroup: refuse before touching the tree.
        if let Err(e) = &host.clone_into_cgroup {
            return Err(CgroupError::NoCloneIntoCgroup {
                reason: e.to_string(),
            });
        }
        // Only the real root lacks cgroup.type; a namespace root or a delegated subtree
        // is an ordinary cgroup, bound by the no-internal-processes rule.
        let real_root = !root.has_file(CGROUP_TYPE);
        let available = read_cgroup_file(&root, CGROUP_CONTROLLERS)?;
        let available: Vec<&str> = available.split_whitespace().collect();
        let mut state: Vec<(Controller, Result<(), String>)> = Controller::ALL
            .iter()
            .map(|&c| match available.contains(&c.name()) {
                true => (c, Ok(())),
                false => (c, Err(unavailable_reason(&root.path, c, host, real_root))),
            })
            .collect();

        // The rule: a non-root cgroup with controllers enabled in its subtree_control may
        // hold no processes. arje usually lives in the delegated root itself, so it
        // leaves first; otherwise the subtree_control write below fails with EBUSY.
        let mut move_failure = None;
        if mode == Setup::Subreaper || !real_root {
            if let Err(e) = move_self(&root, self_pid) {
                log::warn!("arje stays in its current cgroup: {e}");
                move_failure = Some(format!("; arje could not move itself out: {e}"));
            }
        }
        enable(&root, &mut state, move_failure.as_deref().unwrap_or(""));

        let arje = create_or_open(&root, ARJE_SUBTREE)?;
        // <root>/arje holds no process, so enabling here cannot hit the rule.
        enable(&arje, &mut state, "");

        let enabled = state
            .iter()
            .filter(|(_, s)| s.is_ok())
            .map(|(c, _)| *c)
            .collect();
        let caps = probe_caps(&arje, &state);
        Ok(Cgroups {
            tree: Some(Tree { arje, enabled }),
            caps,
        })
    }

    /// No cgroup support at all (no cgroup2, no root given, setup failed): every feature
    /// is reported unenforced with `reason`.
    pub fn disabled(reason: String) -> Cgroups {
        Cgroups {
            tree: None,
            caps: Caps::none(&reason),
        }
    }

    /// Is there a cgroup tree? Without one, workspaces run without cgroups.
    pub fn is_enabled(&self) -> bool {
        self.tree.is_some()
    }

    /// `<root>/arje`, the parent of every workspace.
    pub fn subtree(&self) -> Option<&Path> {
        self.tree.as_ref().map(|t| t.arje.path.as_path())
    }

    /// Controllers every workspace has.
    pub fn enabled_controllers(&self) -> &[Controller] {
        self.tree.as_ref().map_or(&[], |t| t.enabled.as_slice())
    }

    /// One entry per feature, in [`Feature::ALL`] order, for `shuma caps`.
    pub fn capabilities(&self) -> Vec<Capability> {
        self.caps.capabilities()
    }

    /// Each limit `limits` sets that cannot be enforced here, with the reason
    /// ("memory.max=33554432: not enforced: controller memory not in ...").
    pub fn unenforced(&self, limits: &Limits) -> Vec<String> {
        self.caps.unenforced(limits)
    }
}

/// mkdir `<root>/arje-init` (it survives a re-exec, so it may exist) and write our pid to
/// its cgroup.procs. This is the only cgroup.procs write arje makes, once at start.
fn move_self(root: &Dir, self_pid: u32) -> Result<(), CgroupError> {
    let leaf = create_or_open(root, ARJE_INIT_LEAF)?;
    write_cgroup_file(&leaf, CGROUP_PROCS, &self_pid.to_string())
}

/// mkdir `name` below `parent` unless it exists, and open it.
pub(super) fn create_or_open(parent: &Dir, name: &str) -> Result<Dir, CgroupError> {
    let path = parent.path.join(name);
    match mkdir_cgroup(parent, name) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) if is_permission(&source) => {
            return Err(CgroupError::NotDelegated { path, source })
        }
        Err(source) => return Err(CgroupError::CreateCgroup { path, source }),
    }
    parent
        .open_child(name)
        .map_err(|source| CgroupError::OpenCgroup { path, source })
}

fn is_permission(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EACCES | libc::EPERM | libc::EROFS)
    )
}

/// Enable every controller of `state` still Ok in `dir`'s subtree_control, recording a
/// reason for each one that is refused.
fn enable(dir: &Dir, state: &mut [(Controller, Result<(), String>)], context: &str) {
    let wanted: Vec<Controller> = state
        .iter()
        .filter(|(_, s)| s.is_ok())
        .map(|(c, _)| *c)
        .collect();
    if wanted.is_empty() {
        return;
    }
    let line: Vec<String> = wanted.iter().map(|c| format!("+{}", c.name())).collect();
    if write_cgroup_file(dir, CGROUP_SUBTREE_CONTROL, &line.join(" ")).is_ok() {
        return;
    }
    // The kernel applies a subtree_control write all or nothing, so one refusal hides
    // which controller it was: retry one per write to name each failure.
    for (controller, status) in state.iter_mut().filter(|(_, s)| s.is_ok()) {
        let one = format!("+{}", controller.name());
        if let Err(e) = write_cgroup_file(dir, CGROUP_SUBTREE_CONTROL, &one) {
            *status = Err(format!(
                "controller {}: {}",
                controller.name(),
                subtree_reason(dir, &e, context)
            ));
        }
    }
}

fn subtree_reason(dir: &Dir, err: &CgroupError, context: &str) -> String {
    let file = dir.file_path(CGROUP_SUBTREE_CONTROL);
    let source = match err {
        CgroupError::WriteFile { source, .. } => source,
        other => return other.to_string(),
    };
    let errno = errno_name(source);
    match source.raw_os_error() {
        Some(libc::EBUSY) => format!(
            "cannot write {}: {errno}: processes live in {} itself (no internal processes \
             rule){context}",
            file.display(),
            dir.path.display()
        ),
        Some(libc::EACCES | libc::EPERM | libc::EROFS) => {
            format!("not delegated: cannot write {}: {errno}", file.display())
        }
        _ => format!("cannot write {}: {errno}", file.display()),
    }
}

/// Why `controller` is not in `<root>/cgroup.controllers`, as precisely as /proc allows.
fn unavailable_reason(root: &Path, c: Controller, host: &HostInfo, real_root: bool) -> String {
    let base = format!(
        "controller {} not in {}",
        c.name(),
        root.join(CGROUP_CONTROLLERS).display()
    );
    match host
        .proc_cgroups
        .as_deref()
        .map(|text| host_controller(text, c))
    {
        Some(HostController::BoundToV1(h)) => format!(
            "{base}: it is bound to cgroup v1 on this host (hierarchy {h} in /proc/cgroups)"
        ),
        Some(HostController::Disabled) => {
            format!("{base}: disabled on the kernel command line (cgroup_disable=)")
        }
        Some(HostController::Absent) => {
            format!("{base}: the kernel has no {} controller", c.name())
        }
        Some(HostController::OnV2) if !real_root => format!(
            "{base}: the parent cgroup does not delegate it (its cgroup.subtree_control lacks +{})",
            c.name()
        ),
        _ => format!("{base} (bound to cgroup v1 on this host, or not delegated by the parent?)"),
    }
}

/// Decide every feature from the controller states and the files `<root>/arje` shows.
/// `<root>/arje` has exactly the controller files a workspace will have, because both
/// levels enable the same controllers.
fn probe_caps(arje: &Dir, state: &[(Controller, Result<(), String>)]) -> Caps {
    let mut caps = Caps::default();
    for feature in Feature::ALL {
        let controller_state = feature
            .controller()
            .and_then(|c| state.iter().find(|(s, _)| *s == c))
            .map(|(_, s)| s.clone());
        let support = match (controller_state, feature.probe()) {
            (Some(Err(why)), _) => Err(why),
            (_, Some((file, hint))) => match arje.has_file(file) {
                true => Ok(format!("{}/<workspace>/{file}", arje.path.display())),
                false => Err(format!(
                    "{} is missing: {hint}",
                    arje.file_path(file).display()
                )),
            },
            // CloneIntoCgroup, which no file shows: setup_in got here only because the
            // spawner's probe found it, and the spawner has no other way to place a child.
            (_, None) => Ok(format!(
                "clone3 CLONE_INTO_CGROUP into {}/<workspace>/<command>",
                arje.path.display()
            )),
        };
        caps.by_feature.insert(feature, support);
    }
    caps
}
