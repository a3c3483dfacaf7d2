//! The last unmount at shutdown, so the next boot finds every disk clean: every mount of
//! /proc/self/mountinfo, children before their parents and newest first; a busy one is
//! remounted read-only (its data is then safe) and detached lazily (MNT_DETACH, so its
//! parent can go); the root cannot be unmounted and is remounted read-only last. What
//! blocked a mount is named: the processes with a file, a cwd or a root on it.

use std::collections::HashMap;
use std::path::Path;

use rustix::io::Errno;
use rustix::mount::{mount_remount, unmount, MountFlags, UnmountFlags};

/// One line of /proc/self/mountinfo (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub id: u32,
    pub parent: u32,
    pub target: String,
    pub fstype: String,
    pub source: String,
}

/// Parses mountinfo: `id parent maj:min root target options [optional...] - fstype
/// source superoptions`.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let mut r = right.split(' ');
            Some(MountInfo {
                id: f.first()?.parse().ok()?,
                parent: f.get(1)?.parse().ok()?,
                target: super::mounts::unescape(f.get(4)?),
                fstype: r.next()?.to_string(),
                source: super::mounts::unescape(r.next()?),
            })
        })
        .collect()
}

/// The order to unmount in: a post-order walk of the mount tree (every mount after all
/// its children), children visited newest first. The root (whose parent is outside
/// this list) comes last.
pub fn unmount_order(mounts: &[MountInfo]) -> Vec<MountInfo> {
    let ids: std::collections::HashSet<u32> = mounts.iter().map(|m| m.id).collect();
    let mut children: HashMap<u32, Vec<usize>> = HashMap::new();
    let mut tops = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        if m.parent != m.id && ids.contains(&m.parent) {
            children.entry(m.parent).or_default().push(i);
        } else {
            tops.push(i);
        }
    }
    let mut out = Vec::with_capacity(mounts.len());
    // Iterative post-order: (index, children pushed yet?).
    let mut stack: Vec<(usize, bool)> = tops.iter().map(|&i| (i, false)).collect();
    while let Some((i, expanded)) = stack.pop() {
        if expanded {
            out.push(mounts[i].clone());
            continue;
        }
        stack.push((i, true));
        // Pushed oldest first, so the newest child is popped (unmounted) first.
        for &c in children.get(&mounts[i].id).into_iter().flatten() {
            stack.push((c, false));
        }
    }
    out
}

/// Filesystems that hold no data of their own: failing to unmount them is harmless and
/// logged at debug level only (arje's own console fds keep /dev busy).
fn is_pseudo(fstype: &str) -> bool {
    matches!(
        fstype,
        "proc"
            | "sysfs"
            | "devtmpfs"
            | "devpts"
            | "tmpfs"
            | "ramfs"
            | "rootfs"
            | "cgroup"
            | "cgroup2"
            | "mqueue"
            | "debugfs"
            | "tracefs"
            | "securityfs"
            | "pstore"
            | "bpf"
            | "configfs"
            | "fusectl"
            | "hugetlbfs"
            | "efivarfs"
            | "autofs"
            | "binfmt_misc"
    )
}

/// Unmounts everything (see the module doc). Returns the mount points that stayed
/// writable, each with what held it, for the shutdown's log.
pub fn unmount_all() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = parse_mountinfo(&text);
    let targets: Vec<String> = mounts.iter().map(|m| m.target.clone()).collect();
    let holders = |target: &str| holders(target, &targets);
    let mut still_writable = Vec::new();
    for m in unmount_order(&mounts) {
        let pseudo = is_pseudo(&m.fstype);
        if m.target == "/" {
            match mount_remount("/", MountFlags::RDONLY, "") {
                Ok(()) => log::info!("root {} ({}) remounted read-only", m.source, m.fstype),
                Err(e) if pseudo => log::debug!("read-only remount of / ({}): {e}", m.fstype),
                Err(e) => {
                    let held = holders("/");
                    log::warn!("root {} stays writable: {e}; held by {held}", m.source);
                    still_writable.push(format!("/ ({held})"));
                }
            }
            continue;
        }
        let target = m.target.as_str();
        if m.fstype == "proc" {
            // Kept: naming the holders of what follows reads /proc. It holds no data.
            continue;
        }
        let err = match unmount(target, UnmountFlags::empty()) {
            Ok(()) => {
                log::debug!("unmounted {target}");
                continue;
            }
            // Gone already: a parent was detached with it, or it was over-mounted.
            Err(Errno::INVAL | Errno::NOENT) => continue,
            Err(e) => e,
        };
        if pseudo {
            // Left as they are: a read-only devtmpfs would be read-only for the kernel
            // too, and their contents die with the machine anyway.
            log::debug!("unmount {target}: {err}; left mounted");
            continue;
        }
        // Named before the detach, while the mount still has a path.
        let held = holders(target);
        let ro = mount_remount(target, MountFlags::RDONLY, "");
        let _ = unmount(target, UnmountFlags::DETACH);
        match ro {
            Ok(()) => log::info!(
                "unmount {target}: {err} (held by {held}); remounted read-only and detached"
            ),
            Err(e) => {
                log::warn!("unmount {target}: {err}; read-only remount: {e}; held by {held}");
                still_writable.push(format!("{target} ({held})"));
            }
        }
    }
    still_writable
}

/// Who holds files on the mount at `target`: processes (PID 1 included) with an open
/// file, a cwd, a root or an executable there, as `pid (comm): what`, at most 10;
/// "nothing visible" when none (a kernel user: a swap file, a loop device, a detached
/// child mount). `mounts` (every mount point) tells a path on a mount below `target`
/// from one on `target` itself.
pub fn holders(target: &str, mounts: &[String]) -> String {
    let under = |path: &Path| on_mount(path, target, mounts);
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return "unknown (no /proc)".into();
    };
    for p in procs.flatten() {
        let name = p.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let dir = p.path();
        let mut what: Vec<String> = ["cwd", "root", "exe"]
            .iter()
            .filter_map(|l| {
                let link = std::fs::read_link(dir.join(l)).ok()?;
                under(&link).then(|| l.to_string())
            })
            .collect();
        if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
            for fd in fds.flatten() {
                if let Ok(link) = std::fs::read_link(fd.path()) {
                    if under(&link) {
                        what.push(format!("fd {}", link.display()));
                    }
                }
            }
        }
        if what.is_empty() {
            continue;
        }
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        found.push(format!("{pid} ({}): {}", comm.trim(), what.join(", ")));
        if found.len() == 10 {
            break;
        }
    }
    if found.is_empty() {
        "nothing visible".into()
    } else {
        found.join("; ")
    }
}

/// Is `path` on the mount at `target`: under it, and not under a mount below it (a
/// console fd in /dev does not hold `/`)?
fn on_mount(path: &Path, target: &str, mounts: &[String]) -> bool {
    path.starts_with(target)
        && !mounts.iter().any(|m| {
            m.len() > target.len() && Path::new(m).starts_with(target) && path.starts_with(m)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw,mode=755
24 22 0:21 / /proc rw,nosuid,nodev,noexec shared:3 - proc proc rw
25 23 0:22 / /dev/pts rw,nosuid,noexec shared:4 - devpts devpts rw
26 22 0:23 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,mode=755
27 22 254:16 / /var/lib/arje rw,noatime shared:6 - ext4 /dev/vdb rw
28 27 0:24 / /var/lib/arje/with\\040space rw shared:7 - tmpfs tmpfs rw
";

    #[test]
    fn test_parse_mountinfo_reads_ids_target_type_source() {
        // Arrange + Act
        let m = parse_mountinfo(SAMPLE);

        // Assert
        assert_eq!(m.len(), 7);
        assert_eq!(
            m[0],
            MountInfo {
                id: 22,
                parent: 1,
                target: "/".into(),
                fstype: "ext4".into(),
                source: "/dev/vda".into(),
            }
        );
        assert_eq!(m[6].target, "/var/lib/arje/with space");
    }

    #[test]
    fn test_unmount_order_children_first_newest_first_root_last() {
        // Arrange
        let m = parse_mountinfo(SAMPLE);

        // Act
        let order: Vec<String> = unmount_order(&m).into_iter().map(|m| m.target).collect();

        // Assert
        assert_eq!(
            order,
            [
                "/var/lib/arje/with space",
                "/var/lib/arje",
                "/run",
                "/proc",
                "/dev/pts",
                "/dev",
                "/",
            ]
        );
    }

    #[test]
    fn test_on_mount_path_below_a_submount_is_not_the_parents() {
        // Arrange
        let mounts: Vec<String> = ["/", "/dev", "/var/lib/arje"].map(String::from).to_vec();

        // Act + Assert
        assert!(on_mount(Path::new("/var/log/x"), "/", &mounts));
        assert!(!on_mount(Path::new("/dev/console"), "/", &mounts));
        assert!(on_mount(
            Path::new("/var/lib/arje/s"),
            "/var/lib/arje",
            &mounts
        ));
        assert!(!on_mount(
            Path::new("/var/lib/arjex"),
            "/var/lib/arje",
            &mounts
        ));
    }

    #[test]
    fn test_unmount_order_moved_mount_still_before_its_parent() {
        // Arrange: a child whose line comes before its parent's (a mount moved under a
        // newer one): the tree, not the line order, decides.
        let text = "\
1 0 0:1 / / rw - ext4 /dev/vda rw
5 9 0:5 / /mnt/a/b rw - ext4 /dev/vdc rw
9 1 0:9 / /mnt/a rw - ext4 /dev/vdb rw
";

        // Act
        let order: Vec<String> = unmount_order(&parse_mountinfo(text))
            .into_iter()
            .map(|m| m.target)
            .collect();

        // Assert
        assert_eq!(order, ["/mnt/a/b", "/mnt/a", "/"]);
    }
}
