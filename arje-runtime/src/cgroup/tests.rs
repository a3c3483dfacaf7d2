//! Write sequences against the fake kernel of `fake.rs`. Tests on the host's real
//! cgroup2 are in `host_tests.rs`.

use std::path::PathBuf;

use shuma_card::spec::{CpuMax, Limits};

use super::caps::Feature;
use super::fake::{self, FakeRoot};
use super::fs::journal::{self, Op};
use super::fs::Dir;
use super::setup::HostInfo;
use super::workspace::LimitReport;
use super::*;
use crate::sys::spawn::SpawnError;

const ALL_CONTROLLERS: &str = "cpuset cpu io memory hugetlb pids rdma misc";
const HYBRID_PROC_CGROUPS: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
    cpu\t1\t1\t1\nblkio\t7\t1\t1\nmemory\t4\t33\t1\nhugetlb\t0\t1\t1\npids\t8\t1\t1\n";

fn v2_host() -> HostInfo {
    let proc_cgroups = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
        cpu\t0\t1\t1\nblkio\t0\t1\t1\nmemory\t0\t1\t1\npids\t0\t1\t1\n";
    HostInfo {
        proc_cgroups: Some(proc_cgroups.into()),
        clone_into_cgroup: Ok(()),
    }
}

fn setup_fake(root: &FakeRoot, mode: Setup, host: &HostInfo) -> Cgroups {
    let dir = Dir::open(&root.path).expect("open fake root");
    let cgroups = Cgroups::setup_in(dir, 4242, mode, host).expect("setup");
    journal::take();
    cgroups
}

fn write(path: PathBuf, value: &str) -> Op {
    Op::Write(path, value.to_string())
}

fn writes_to(ops: &[Op], file: &str) -> Vec<Op> {
    ops.iter()
        .filter(|op| matches!(op, Op::Write(p, _) if p.ends_with(file)))
        .cloned()
        .collect()
}

fn limits_32m_64_half_cpu() -> Limits {
    Limits {
        memory_max: Some(32 << 20),
        pids_max: Some(64),
        cpu_max: Some(CpuMax {
            quota_us: 50_000,
            period_us: 100_000,
        }),
        ..Default::default()
    }
}

#[test]
fn test_setup_pid1_real_root_enables_wanted_controllers_in_both_levels() {
    // Arrange
    let root = FakeRoot::new(ALL_CONTROLLERS, true);
    let dir = Dir::open(&root.path).unwrap();

    // Act
    let cgroups = Cgroups::setup_in(dir, 1, Setup::Pid1, &v2_host()).unwrap();

    // Assert: PID 1 stays in the real root (exempt); no cgroup.procs write at all.
    let arje = root.path.join(ARJE_SUBTREE);
    assert_eq!(
        journal::take(),
        [
            write(
                root.path.join(CGROUP_SUBTREE_CONTROL),
                "+cpu +io +memory +pids"
            ),
            Op::Mkdir(arje.clone()),
            write(arje.join(CGROUP_SUBTREE_CONTROL), "+cpu +io +memory +pids"),
        ]
    );
    assert!(
        cgroups.capabilities().iter().all(|c| c.enforced),
        "{:?}",
        cgroups.capabilities()
    );
}

#[test]
fn test_setup_subreaper_moves_itself_before_enabling_controllers() {
    // Arrange: a delegated subtree offering memory and pids.
    let root = FakeRoot::new("memory pids", false);
    let dir = Dir::open(&root.path).unwrap();

    // Act
    let cgroups = Cgroups::setup_in(dir, 4242, Setup::Subreaper, &v2_host()).unwrap();

    // Assert
    let init = root.path.join(ARJE_INIT_LEAF);
    let ops = journal::take();
    assert_eq!(ops[0], Op::Mkdir(init.clone()));
    assert_eq!(ops[1], write(init.join(CGROUP_PROCS), "4242"));
    assert_eq!(
        ops[2],
        write(root.path.join(CGROUP_SUBTREE_CONTROL), "+memory +pids")
    );
    assert_eq!(
        cgroups.enabled_controllers(),
        [Controller::Memory, Controller::Pids]
    );
}

#[test]
fn test_setup_pid1_in_namespace_root_moves_itself() {
    // Arrange: PID 1 of a container: its /sys/fs/cgroup has cgroup.type (not the real root).
    let root = FakeRoot::new(ALL_CONTROLLERS, false);
    let dir = Dir::open(&root.path).unwrap();

    // Act
    Cgroups::setup_in(dir, 1, Setup::Pid1, &v2_host()).unwrap();

    // Assert
    let init = root.path.join(ARJE_INIT_LEAF);
    let ops = journal::take();
    assert_eq!(ops[0], Op::Mkdir(init.clone()));
    assert_eq!(ops[1], write(init.join(CGROUP_PROCS), "1"));
}

#[test]
fn test_unenforced_hybrid_host_names_limits_and_v1_binding() {
    // Arrange: this host: cgroup2 root with hugetlb only, memory and pids bound to v1.
    let root = FakeRoot::new("hugetlb", true);
    let host = HostInfo {
        proc_cgroups: Some(HYBRID_PROC_CGROUPS.into()),
        ..v2_host()
    };
    let cgroups = setup_fake(&root, Setup::Subreaper, &host);
    let limits = Limits {
        memory_max: Some(32 << 20),
        pids_max: Some(64),
        ..Default::default()
    };

    // Act
    let lines = cgroups.unenforced(&limits);

    // Assert
    let controllers = root.path.join(CGROUP_CONTROLLERS);
    assert_eq!(
        lines,
        [
            format!(
                "memory.max=33554432: not enforced: controller memory not in {}: it is bound to \
                 cgroup v1 on this host (hierarchy 4 in /proc/cgroups)",
                controllers.display()
            ),
            format!(
                "pids.max=64: not enforced: controller pids not in {}: it is bound to cgroup v1 \
                 on this host (hierarchy 8 in /proc/cgroups)",
                controllers.display()
            ),
        ]
    );
}

#[test]
fn test_setup_no_controllers_writes_no_subtree_control() {
    // Arrange
    let root = FakeRoot::new("hugetlb", true);
    let dir = Dir::open(&root.path).unwrap();

    // Act
    Cgroups::setup_in(dir, 7, Setup::Subreaper, &v2_host()).unwrap();

    // Assert
    assert!(writes_to(&journal::take(), CGROUP_SUBTREE_CONTROL).is_empty());
}

#[test]
fn test_unenforced_undelegated_controller_says_parent() {
    // Arrange: a delegated subtree whose parent enabled only pids, on a pure v2 host.
    let root = FakeRoot::new("pids", false);
    let cgroups = setup_fake(&root, Setup::Subreaper, &v2_host());
    let limits = Limits {
        memory_high: Some(1 << 20),
        ..Default::default()
    };

    // Act
    let lines = cgroups.unenforced(&limits);

    // Assert
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("memory.high=1048576: not enforced: controller memory"));
    assert!(
        lines[0].contains("parent cgroup does not delegate it"),
        "{}",
        lines[0]
    );
}

#[test]
fn test_setup_without_clone_into_cgroup_refuses_before_any_write() {
    // Arrange: Linux 5.4: clone3 refuses the `cgroup` field it does not know with E2BIG.
    let root = FakeRoot::new(ALL_CONTROLLERS, false);
    let dir = Dir::open(&root.path).unwrap();
    let host = HostInfo {
        clone_into_cgroup: Err(SpawnError::Clone(std::io::Error::from_raw_os_error(
            libc::E2BIG,
        ))),
        ..v2_host()
    };

    // Act
    let err = Cgroups::setup_in(dir, 4242, Setup::Subreaper, &host).unwrap_err();

    // Assert: arje did not even move itself; the reason names the kernel requirement.
    assert!(journal::take().is_empty());
    assert!(matches!(err, CgroupError::NoCloneIntoCgroup { .. }));
    assert!(err.to_string().contains("Linux 5.7"), "{err}");
}

#[test]
fn test_capabilities_clone_into_cgroup_enforced_with_cgroups() {
    // Arrange
    let root = FakeRoot::new(ALL_CONTROLLERS, true);

    // Act
    let cgroups = setup_fake(&root, Setup::Pid1, &v2_host());

    // Assert
    let clone = cgroups.caps.get(Feature::CloneIntoCgroup).unwrap();
    assert!(
        clone.starts_with("clone3 CLONE_INTO_CGROUP into "),
        "{clone}"
    );
}

#[test]
fn test_capabilities_missing_swap_file_explained() {
    // Arrange: swap accounting off: the kernel creates no memory.swap.max.
    let root = FakeRoot::new(ALL_CONTROLLERS, true);
    let cgroups = setup_fake(&root, Setup::Pid1, &v2_host());
    std::fs::remove_file(root.path.join(ARJE_SUBTREE).join(MEMORY_SWAP_MAX)).unwrap();
    let dir = Dir::open(&root.path).unwrap();
    drop(cgroups);

    // Act
    let cgroups = Cgroups::setup_in(dir, 1, Setup::Pid1, &v2_host()).unwrap();

    // Assert
    let why = cgroups.caps.get(Feature::MemorySwapMax).unwrap_err();
    assert!(why.contains("swap accounting"), "{why}");
    assert!(cgroups.caps.get(Feature::MemoryMax).is_ok());
}

#[test]
fn test_create_workspace_enables_controllers_then_writes_limits() {
    // Arrange
    let root = FakeRoot::new(ALL_CONTROLLERS, true);
    let cgroups = setup_fake(&root, Setup::Pid1, &v2_host());

    // Act
    let (ws, warnings) = cgroups
        .create_workspace("web", &limits_32m_64_half_cpu())
        .unwrap();

    // Assert
    let path = root.path.join("arje/web");
    assert_eq!(ws.path(), path);
    assert_eq!(
        journal::take(),
        [
            Op::Mkdir(path.clone()),
            write(path.join(CGROUP_SUBTREE_CONTROL), "+cpu +io +memory +pids"),
            write(path.join(MEMORY_MAX), "33554432"),
            write(path.join(PIDS_MAX), "64"),
            write(path.join(CPU_MAX), "50000 100000"),
        ]
    );
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn test_create_leaf_mkdir_only_no_subtree_control() {
    // Arrange
    let root = FakeRoot::new(ALL_CONTROLLERS, true);
    let cgroups = setup_fake(&root, Setup::Pid1, &v2_host());
    let (ws, _) = cgroups.create_workspace("web", &Limits::default()).unwrap();
    journal::take();

    // Act
    let leaf = ws.create_leaf("server.1").unwrap();

    // Assert: the leaf holds processes, so it never gets subtree_control.
    assert_eq!(
        journal::take(),
        [Op::Mkdir(root.path.join("arje/web/server.1"))]
    );
    assert_eq!(leaf.dir.path, root.path.join("arje/web/server.1"));
}

#[test]
fn test_create_workspace_partial_controllers_writes_only_enforceable() {
    // Arrange: only memory is delegated.
    let root = FakeRoot::new("memory", false);
    let cgroups = setup_fake(&root, Setup::Subreaper, &v2_host());

    // Act
    let (ws, warnings) = cgroups
        .create_workspace("db", &limits_32m_64_half_cpu())
        .unwrap();

    // Assert
    let ops = journal::take();
    assert_eq!(
        writes_to(&ops, CGROUP_SUBTREE_CONTROL),
        [write(ws.path().join(CGROUP_SUBTREE_CONTROL), "+memory")]
    );
    assert!(writes_to(&ops, PIDS_MAX).is_empty());
    assert_eq!(warnings.len(), 2);
    assert!(warnings[0].starts_with("pids.max=64: not enforced"));
    assert!(warnings[1].starts_with("cpu.max=50000 100000: not enforced"));
}

#[test]
fn test_create_workspace_existing_fails_with_path() {
    // Arrange
    let root = FakeRoot::new(ALL_CONTROLLERS, true);
    let cgroups = setup_fake(&root, Setup::Pid1, &v2_host());
    cgroups.create_workspace("web", &Limits::default()).unwrap();

    // Act
    let err = cgroups
        .create_workspace("web", &Limits::default())
        .unwrap_err();

    // Assert
    assert!(matches!(
        &err,
        CgroupError::CreateCgroup { path, source }
            if path.ends_with("arje/web") && source.raw_os_error() == Some(libc::EEXIST)
    ));
}

#[test]
fn test_create_workspace_reserved_name_refused() {
    // Arrange
    let root = FakeRoot::new(ALL_CONTROLLERS, true);
    let cgroups = setup_fake(&root, Setup::Pid1, &v2_host());

    // Act
    let err = cgroups
        .create_workspace("memory.max", &Limits::default())
        .unwrap_err();

    // Assert
    assert!(matches!(err, CgroupError::InvalidName { .. }), "{err}");
    assert!(journal::take().is_empty());
}

#[test]
fn test_disabled_create_workspace_says_why() {
    // Arrange
    let cgroups = Cgroups::disabled("no cgroup2 mounted".into());

    // Act
    let err = cgroups
        .create_workspace("web", &Limits::default())
        .unwrap_err();

    // Assert
    assert_eq!(err.to_string(), "cgroups are disabled: no cgroup2 mounted");
    assert!(!cgroups.is_enabled());
}

#[test]
fn test_set_limit_max_writes_max() {
    // Arrange
    let root = FakeRoot::new(ALL_CONTROLLERS, true);
    let cgroups = setup_fake(&root, Setup::Pid1, &v2_host());
    let (ws, _) = cgroups
        .create_workspace("web", &limits_32m_64_half_cpu())
        .unwrap();
    journal::take();

    // Act: `shuma ws set web memory_max=max` cleared the limit in the spec.
    let report = ws.set_limit("memory_max", &Limits::default()).unwrap();

    // Assert
    assert_eq!(journal::take(), [write(ws.path().join(MEMORY_MAX), "max")]);
    assert_eq!(
        report,
        LimitReport {
            file: MEMORY_MAX,
            value: "max".into(),
            oom: 0,
            oom_kill: 0
        }
    );
}

#[test]
fn test_set_limit_unknown_key_refused() {
    // Arrange
    let root = FakeRoot::new(ALL_CONTROLLERS, true);
    let cgroups = setup_fake(&root, Setup::Pid1, &v2_host());
    let (ws, _) = cgroups.create_workspace("web", &Limits::default()).unwrap();

    // Act
    let err = ws.set_limit("memory.max", &Limits::default()).unwrap_err();

    // Assert
    assert!(matches!(err, CgroupError::UnknownLimit { .. }));
}

#[test]
fn test_memory_events_localevents_takes_leaf_kills() {
    // Arrange: mounted with memory_localevents: the workspace's own oom_kill stays 0.
    let root = FakeRoot::new(ALL_CONTROLLERS, true);
    let cgroups = setup_fake(&root, Setup::Pid1, &v2_host());
    let (ws, _) = cgroups.create_workspace("web", &Limits::default()).unwrap();
    let leaf = ws.create_leaf("hog").unwrap();
    fake::write(
        &ws.path().join(MEMORY_EVENTS),
        "low 0\nhigh 0\nmax 9\noom 2\noom_kill 0\n",
    );
    fake::write(
        &leaf.dir.path.join(MEMORY_EVENTS),
        "max 0\noom 0\noom_kill 2\n",
    );

    // Act
    let ev = ws.memory_events().unwrap();

    // Assert
    assert_eq!((ev.max, ev.oom, ev.oom_kill), (9, 2, 2));
    assert_eq!(leaf.memory_events().unwrap().oom_kill, 2);
}

#[test]
fn test_populated_and_events_fd_read_kernel_format() {
    // Arrange
    let root = FakeRoot::new(ALL_CONTROLLERS, true);
    let cgroups = setup_fake(&root, Setup::Pid1, &v2_host());
    let (ws, _) = cgroups.create_workspace("web", &Limits::default()).unwrap();
    let fd = ws.open_events_file(EventsFile::Cgroup).unwrap();
    fake::write(&ws.path().join(CGROUP_EVENTS), "populated 1\nfrozen 0\n");

    // Act
    let text = read_events(std::os::fd::AsFd::as_fd(&fd)).unwrap();

    // Assert
    assert_eq!(parse_populated(&text), Some(true));
    assert!(ws.populated().unwrap());
}

#[test]
fn test_stats_reads_present_files_missing_peak_none() {
    // Arrange: a 5.15 kernel has no memory.peak.
    let root = FakeRoot::new(ALL_CONTROLLERS, true);
    let cgroups = setup_fake(&root, Setup::Pid1, &v2_host());
    let (ws, _) = cgroups.create_workspace("web", &Limits::default()).unwrap();
    std::fs::remove_file(ws.path().join(MEMORY_PEAK)).unwrap();
    fake::write(&ws.path().join(MEMORY_CURRENT), "4096\n");
    fake::write(&ws.path().join(PIDS_CURRENT), "3\n");
    fake::write(&ws.path().join(CPU_STAT), "usage_usec 250\nuser_usec 200\n");

    // Act
    let s = ws.stats().unwrap();

    // Assert
    assert_eq!(
        (
            s.memory_current,
            s.memory_peak,
            s.pids_current,
            s.cpu_usage_us
        ),
        (Some(4096), None, Some(3), Some(250))
    );
}

#[test]
fn test_kill_writes_one_to_cgroup_kill() {
    // Arrange
    let root = FakeRoot::new(ALL_CONTROLLERS, true);
    let cgroups = setup_fake(&root, Setup::Pid1, &v2_host());
    let (ws, _) = cgroups.create_workspace("web", &Limits::default()).unwrap();
    journal::take();

    // Act
    ws.kill().unwrap();

    // Assert
    assert_eq!(journal::take(), [write(ws.path().join(CGROUP_KILL), "1")]);
}

#[test]
fn test_kill_without_cgroup_kill_freezes_and_sigkills_each_pid() {
    // Arrange: a kernel older than 5.14; a real child stands in for the leaf's process.
    let root = FakeRoot::new(ALL_CONTROLLERS, true);
    let cgroups = setup_fake(&root, Setup::Pid1, &v2_host());
    let (ws, _) = cgroups.create_workspace("old", &Limits::default()).unwrap();
    let leaf = ws.create_leaf("cmd").unwrap();
    std::fs::remove_file(ws.path().join(CGROUP_KILL)).unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    fake::write(
        &leaf.dir.path.join(CGROUP_PROCS),
        &format!("{}\n", child.id()),
    );
    journal::take();

    // Act
    ws.kill().unwrap();

    // Assert
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    assert_eq!(
        journal::take(),
        [
            write(ws.path().join(CGROUP_FREEZE), "1"),
            write(ws.path().join(CGROUP_FREEZE), "0")
        ]
    );
}

#[test]
fn test_remove_leaves_first_then_workspace() {
    // Arrange
    let root = FakeRoot::new(ALL_CONTROLLERS, true);
    let cgroups = setup_fake(&root, Setup::Pid1, &v2_host());
    let (ws, _) = cgroups.create_workspace("web", &Limits::default()).unwrap();
    ws.create_leaf("a").unwrap();
    ws.create_leaf("b").unwrap();
    journal::take();

    // Act
    ws.remove().unwrap();

    // Assert
    let path = root.path.join("arje/web");
    assert_eq!(
        journal::take(),
        [
            Op::Rmdir(path.join("a")),
            Op::Rmdir(path.join("b")),
            Op::Rmdir(path.clone())
        ]
    );
    assert!(!path.exists());
}

#[test]
fn test_remove_populated_leaf_fails_naming_it() {
    // Arrange
    let root = FakeRoot::new(ALL_CONTROLLERS, true);
    let cgroups = setup_fake(&root, Setup::Pid1, &v2_host());
    let (ws, _) = cgroups.create_workspace("web", &Limits::default()).unwrap();
    let leaf = ws.create_leaf("daemon").unwrap();
    fake::write(
        &leaf.dir.path.join(CGROUP_EVENTS),
        "populated 1\nfrozen 0\n",
    );

    // Act
    let err = ws.remove().unwrap_err();

    // Assert
    assert!(matches!(&err, CgroupError::RemoveCgroup { path, .. } if *path == leaf.dir.path));
    assert!(err.to_string().contains("still populated"), "{err}");
    assert!(ws.path().exists());
}

#[test]
fn test_open_workspace_after_reexec_sees_leaves() {
    // Arrange
    let root = FakeRoot::new(ALL_CONTROLLERS, true);
    let cgroups = setup_fake(&root, Setup::Pid1, &v2_host());
    let (ws, _) = cgroups.create_workspace("web", &Limits::default()).unwrap();
    ws.create_leaf("server").unwrap();
    drop(ws);

    // Act
    let ws = cgroups.open_workspace("web").unwrap();

    // Assert
    assert_eq!(ws.leaves().unwrap(), ["server"]);
}

#[test]
fn test_check_name_rules() {
    assert!(check_name("web-1.2").is_ok());
    assert!(check_name("io.worker").is_err());
    assert!(check_name("cgroup.procs").is_err());
    assert!(check_name("..").is_err());
    assert!(check_name("a/b").is_err());
    assert!(check_name("").is_err());
}

#[test]
fn test_setup_plain_directory_not_cgroup2() {
    // Arrange
    let tmp = tempfile::tempdir().unwrap();

    // Act
    let err = Cgroups::setup(tmp.path(), std::process::id(), Setup::Subreaper).unwrap_err();

    // Assert
    assert!(
        matches!(&err, CgroupError::NotCgroup2 { path, .. } if path == tmp.path()),
        "{err}"
    );
}
