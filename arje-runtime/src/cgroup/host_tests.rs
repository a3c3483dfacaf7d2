//! Tests on the host's real cgroup2, where one is mounted and writable (root); each is
//! skipped with a note otherwise. On a hybrid host (cgroup2 without controllers) they
//! still prove mkdir, moving a pid, cgroup.kill, cgroup.events and its EPOLLPRI, rmdir.

use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use shuma_card::spec::Limits;

use super::setup::{fs_magic, CGROUP2_SUPER_MAGIC};
use super::*;

/// Is `path` a cgroup2 mount (or a directory inside one)? statfs(2) and its f_type.
fn is_cgroup2(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|fs| fs_magic(&fs) == CGROUP2_SUPER_MAGIC)
}

/// A fresh directory below the host's cgroup2 mount, removed with everything in it.
struct RealRoot {
    path: PathBuf,
    stand_in: Child,
}

impl RealRoot {
    fn new() -> Option<RealRoot> {
        static N: AtomicU32 = AtomicU32::new(0);
        let mount = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(Path::new)
            .find(|p| is_cgroup2(p));
        let Some(mount) = mount else {
            eprintln!("skipped: no cgroup2 mount on this host");
            return None;
        };
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = mount.join(format!("arje-test-{}-{n}", std::process::id()));
        if let Err(e) = std::fs::create_dir(&path) {
            eprintln!("skipped: cannot mkdir {}: {e}", path.display());
            return None;
        }
        // arje moves itself into arje-init; a sleeping child plays arje so the test
        // harness itself stays where it is.
        let stand_in = Command::new("sleep").arg("1000").spawn().unwrap();
        Some(RealRoot { path, stand_in })
    }
}

impl Drop for RealRoot {
    fn drop(&mut self) {
        let _ = self.stand_in.kill();
        let _ = self.stand_in.wait();
        for sub in ["arje", ARJE_INIT_LEAF, ""] {
            let _ = std::fs::remove_dir(self.path.join(sub));
        }
    }
}

#[test]
fn test_real_workspace_kill_notifies_empties_and_removes() {
    // Arrange
    let Some(root) = RealRoot::new() else { return };
    let cgroups = Cgroups::setup(&root.path, root.stand_in.id(), Setup::Subreaper).unwrap();
    let limits = Limits {
        memory_max: Some(32 << 20),
        ..Default::default()
    };
    let (ws, warnings) = cgroups.create_workspace("w", &limits).unwrap();
    let leaf = ws.create_leaf("cmd").unwrap();
    let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
    // The spawner uses CLONE_INTO_CGROUP; a test without unsafe moves the child in.
    std::fs::write(leaf.dir.path.join(CGROUP_PROCS), child.id().to_string()).unwrap();
    let events = ws.open_events_file(EventsFile::Cgroup).unwrap();
    let before = read_events(events.as_fd()).unwrap();

    // Act
    ws.kill().unwrap();
    let status = child.wait().unwrap();

    // Assert
    assert_eq!(parse_populated(&before), Some(true));
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    // The kernel coalesces notifications to one per 10 ms per file, so this waits
    // for the event rather than expecting it already there; the bound only stops a
    // broken kernel from hanging the test.
    let mut fds = [PollFd::new(&events, PollFlags::PRI)];
    let bound = Timespec {
        tv_sec: 10,
        tv_nsec: 0,
    };
    assert_eq!(poll(&mut fds, Some(&bound)).unwrap(), 1);
    assert!(fds[0].revents().contains(PollFlags::PRI));
    assert_eq!(
        parse_populated(&read_events(events.as_fd()).unwrap()),
        Some(false)
    );
    ws.remove().unwrap();
    assert!(!root.path.join("arje/w").exists());
    if !std::fs::read_to_string(root.path.join(CGROUP_CONTROLLERS))
        .unwrap()
        .contains("memory")
    {
        assert!(
            warnings.iter().any(|w| w.starts_with("memory.max=")),
            "{warnings:?}"
        );
    }
}

#[test]
fn test_real_setup_subreaper_moves_itself_into_init_leaf() {
    // Arrange
    let Some(root) = RealRoot::new() else { return };

    // Act
    let _cgroups = Cgroups::setup(&root.path, root.stand_in.id(), Setup::Subreaper).unwrap();

    // Assert
    let procs = root.path.join(ARJE_INIT_LEAF).join(CGROUP_PROCS);
    let pids = std::fs::read_to_string(procs).unwrap();
    let stand_in = root.stand_in.id().to_string();
    assert!(pids.split_whitespace().any(|p| p == stand_in), "{pids}");
}

#[test]
fn test_real_leaf_kill_sigkills_its_process() {
    // Arrange
    let Some(root) = RealRoot::new() else { return };
    let cgroups = Cgroups::setup(&root.path, root.stand_in.id(), Setup::Subreaper).unwrap();
    let (ws, _) = cgroups.create_workspace("w", &Limits::default()).unwrap();
    let leaf = ws.create_leaf("cmd").unwrap();
    let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
    std::fs::write(leaf.dir.path.join(CGROUP_PROCS), child.id().to_string()).unwrap();

    // Act
    leaf.kill().unwrap();
    let status = child.wait().unwrap();

    // Assert
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    ws.remove().unwrap();
}
