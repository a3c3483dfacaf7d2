//! Early mounts (the unmount at shutdown is in unmount.rs).
//!
//! The kernel hands PID 1 a rootfs (the unpacked initramfs) with nothing mounted on it:
//! devtmpfs is not auto-mounted for an initramfs, so /dev is whatever the cpio holds.

use std::ffi::CStr;

use rustix::fs::Mode;
use rustix::mount::{mount, MountFlags};

/// One early mount.
struct Early {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MountFlags,
    data: Option<&'static CStr>,
}

const NOSUID_NODEV_NOEXEC: MountFlags = MountFlags::NOSUID
    .union(MountFlags::NODEV)
    .union(MountFlags::NOEXEC);

/// In order: /proc first (everything after reads /proc/self/mounts), /dev before
/// /dev/pts, /sys before the cgroup2 mount below it.
const EARLY: &[Early] = &[
    Early {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    Early {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    Early {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MountFlags::NOSUID,
        data: Some(c"mode=0755"),
    },
    Early {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MountFlags::NOSUID.union(MountFlags::NOEXEC),
        data: Some(c"gid=5,mode=0620,ptmxmode=0666"),
    },
    Early {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: MountFlags::NOSUID.union(MountFlags::NODEV),
        data: Some(c"mode=0755"),
    },
];

/// Mounts proc, sysfs, devtmpfs, devpts, /run and cgroup2. A target already mounted
/// (a re-exec of PID 1) is left alone; a failure is logged and boot goes on, since
/// arje with a missing /dev/pts is better than a kernel panic.
pub fn mount_early() {
    // /proc/self/mounts is read once, and once more after mounting /proc if it was not
    // there: what was mounted before us is in one of the two readings, and only we
    // mount in between (a read per target cost about 2 ms each under QEMU's TCG).
    let mut mounted = mount_points();
    for m in EARLY {
        if mounted.iter().any(|p| p == m.target) {
            log::debug!("{} already mounted", m.target);
            continue;
        }
        if let Err(e) = rustix::fs::mkdir(m.target, Mode::from_raw_mode(0o755)) {
            if e != rustix::io::Errno::EXIST {
                log::warn!("mkdir {}: {e}", m.target);
            }
        }
        match mount(m.source, m.target, m.fstype, m.flags, m.data) {
            Ok(()) => log::debug!("mounted {} on {}", m.fstype, m.target),
            Err(e) => log::error!("mount {} on {}: {e}", m.fstype, m.target),
        }
        if m.target == "/proc" {
            mounted = mount_points();
        }
    }
    if !mounted.iter().any(|p| p == CGROUP2) {
        mount_cgroup2();
    }
}

const CGROUP2: &str = "/sys/fs/cgroup";

/// cgroup2 with nsdelegate (cgroup namespaces become delegation boundaries); a kernel
/// that refuses the option gets a plain mount.
fn mount_cgroup2() {
    let target = CGROUP2;
    let flags = NOSUID_NODEV_NOEXEC;
    match mount("cgroup2", target, "cgroup2", flags, c"nsdelegate") {
        Ok(()) => log::debug!("mounted cgroup2 on {target} (nsdelegate)"),
        Err(e) => {
            log::warn!("mount cgroup2 nsdelegate on {target}: {e}; trying without");
            if let Err(e) = mount("cgroup2", target, "cgroup2", flags, None) {
                log::error!("mount cgroup2 on {target}: {e}; workspaces get no cgroups");
            }
        }
    }
}

/// Is `target` a mount point now? Reads /proc/self/mounts; without /proc, nothing is.
pub fn is_mounted(target: &str) -> bool {
    mount_points().iter().any(|m| m == target)
}

/// Mount points in /proc/self/mounts order (oldest first), octal escapes decoded.
pub fn mount_points() -> Vec<String> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mounts") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(1))
        .map(unescape)
        .collect()
}

/// /proc/self/mounts writes space, tab, newline and backslash as `\ooo`.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_unescape_octal_space_is_decoded() {
        // Arrange
        let field = "/mnt/a\\040b";

        // Act
        let s = unescape(field);

        // Assert
        assert_eq!(s, "/mnt/a b");
    }

    #[test]
    fn test_unescape_trailing_backslash_is_kept() {
        // Arrange
        let field = "/x\\04";

        // Act
        let s = unescape(field);

        // Assert
        assert_eq!(s, "/x\\04");
    }
}
